"""The metric table against what reads and writes metrics: evaluate's result keys and intervals, the
`--metrics` words, the experiment's eval.metrics, the sweep's evaluate command."""

import importlib
from pathlib import Path

import numpy as np
import pytest

from mpdit_bench.evaluation import evaluate, write_npz
from mpdit_bench.evaluation import metric_table as T
from mpdit_bench.evaluation.evaluate import parse_metrics

E = importlib.import_module("mpdit_bench.evaluation.evaluate")  # the package's `evaluate` is the function

# what evaluate writes beside the metrics: counts, hashes, options, notes, timings, the bootstrap's own keys
BOOKKEEPING = {"num_samples", "num_reference", "inception_weights_sha256", "reference_sha256",
               "proxy_weights_sha256", "metrics", "fd_method", "kid_std", "kid_fmnist_proxy_std", "reference_cached",
               "notes", "wall_s", "bootstrap", "bootstrap_s", "bootstrap_replicates"}


class FakeInception:
    """Fixed random projections of the pixels in the Inception network's shapes (pool3, spatial, logits):
    evaluate's bookkeeping at the cost of a matrix product."""

    def __init__(self, logits: bool):
        rng = np.random.default_rng(0)
        self.proj = {"pool3": rng.normal(size=(12 * 12 * 3, 2048)), "spatial": rng.normal(size=(12 * 12 * 3, 2023))}
        if logits:
            self.proj["logits"] = rng.normal(size=(12 * 12 * 3, 1008)) * 0.01

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = images.reshape(len(images), -1).astype(np.float64) / 255.0
        return {k: (x @ p).astype(np.float32) for k, p in self.proj.items()}


@pytest.fixture
def fake_inception(monkeypatch, tmp_path):
    monkeypatch.setenv("MPDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(E, "resolve_weights", lambda weights: (Path("fake.pth"), "0" * 64, True))
    monkeypatch.setattr(E, "shared_inception", lambda path, sha, device, logits, classifier: FakeInception(logits))


def _pair(tmp_path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    labels = np.arange(12) % 10
    samples = write_npz(tmp_path / "s.npz", rng.integers(0, 256, (12, 12, 12, 3), dtype=np.uint8), labels)
    ref = write_npz(tmp_path / "r.npz", rng.integers(0, 256, (14, 12, 12, 3), dtype=np.uint8), np.arange(14) % 10)
    return samples, ref


def _run(samples, ref, metrics, bootstrap=0) -> dict:
    return evaluate(samples, ref, metrics, progress=False, use_cache=False, kid_subsets=5, kid_subset_size=8,
                    is_split_size=6, bootstrap=bootstrap)


def test_every_metric_evaluate_writes_is_in_the_table_with_its_interval(fake_inception, tmp_path):
    samples, ref = _pair(tmp_path)
    out = _run(samples, ref, ",".join(T.FLAGS), bootstrap=20)
    written = {k for k in out if not k.endswith("_ci95")} - BOOKKEEPING
    assert written == set(T.EVALUATED) == set(E.RESULT_KEYS)
    assert all(out[name] is not None for name in T.EVALUATED), [n for n in T.EVALUATED if out[n] is None]
    with_interval = {m.name for m in T.METRICS if m.flag and m.bootstrap}
    assert {k[: -len("_ci95")] for k in out if k.endswith("_ci95")} == with_interval
    assert set(out["bootstrap_replicates"]) == with_interval
    for name in with_interval:
        low, high = out[f"{name}_ci95"]
        floor, ceiling = T.metric_range(name)
        assert low <= high and (floor is None or low >= floor) and (ceiling is None or high <= ceiling), name


def test_each_flag_computes_the_metrics_the_table_gives_it(fake_inception, tmp_path):
    samples, ref = _pair(tmp_path)
    for flag in T.FLAGS:  # with replicates the sample rows are kept: sFID takes the fast low-rank form
        out = _run(samples, ref, flag, bootstrap=2)
        assert {name for name in T.EVALUATED if out[name] is not None} == set(T.names_for([flag])), flag


def test_the_experiment_metric_list_and_the_sweep_flags_come_from_the_table():
    from mpdit_bench.sweeps.settings import METRICS
    from mpdit_bench.sweeps.pipeline import cli_metrics

    assert METRICS == T.EVALUATED and "heldout_loss" not in METRICS  # held-out loss is not evaluate's
    assert parse_metrics(cli_metrics(list(METRICS))) == T.FLAGS  # every result key has a flag that computes it
    assert cli_metrics(["precision", "recall_fmnist_proxy", "fd_fmnist_proxy"]) == "prec,proxy"
    assert {m.name for m in T.METRICS if m.features == T.HELDOUT} == {"heldout_loss"}


def test_lookups():
    assert T.higher_is_better("is") and T.higher_is_better("class_accuracy_fmnist_proxy")
    assert not T.higher_is_better("fid") and not T.higher_is_better("heldout_loss")
    assert T.metric_range("precision") == (0.0, 1.0) and T.metric_range("kid") == (None, None)  # KID can be < 0
    assert T.clip("recall", -0.1, 1.2) == (0.0, 1.0) and T.clip("is", 0.5, 3.0) == (1.0, 3.0)
    assert T.clip("kid", -0.01, 0.02) == (-0.01, 0.02)
    assert T.canonical(" Precision ") == "prec" and T.canonical("prec") == "prec" and T.canonical("fd") is None
    with pytest.raises(KeyError, match="allowed: fid"):
        T.metric("FID")
