"""Throughput and peak memory of two models side by side, in one process, at the same batch.

    train:  one AdamW step (forward, backward, update; bf16 autocast on GPU) on random latents
    sample: one whole trajectory of the engine's sampler (``engine.sampling.sample_indices``: Euler,
            ``sample_steps`` steps, classifier-free guidance, a patch schedule's stages in turn) at the
            precision `mpdit-bench sample` runs (fp32, TF32 matmuls on CUDA)

Each model gets ``warmup`` untimed iterations (in sample mode short trajectories that reach every stage),
then ``reps`` timed repetitions of ``iters`` iterations.

FLOPs in sample mode follow the trajectory: a model with a patch schedule (PPFlow) runs its coarse stages
on fewer tokens, so one evaluation costs the average over the sampler's evaluation times
(``counting.trajectory_flops``), and an image costs that x steps x guidance passes (2 with a null batch).
Peak memory (``bench.meters``): on CUDA the bytes held by tensors; on CPU the peak resident set size
above the RSS before the model was built. The method used is recorded with the numbers.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from mpdit_bench.bench.meters import RssPeak, release_host_memory, resolve_device, synchronize
from mpdit_bench.counting import param_count
from mpdit_bench.engine.sampling import SETTINGS, check_options
from mpdit_bench.engine.torch_settings import applied
from mpdit_bench.files import write_text_atomic
from mpdit_bench.models import build_model, model_config

MODES = ("train", "sample")


WARMUP_TRAJECTORY_STEPS = 8  # Euler on 8 steps evaluates in every stage of PPFlow's 2- and 3-stage schedules


def _training_step(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                   amp) -> Callable[[], None]:
    """One training step: forward, flow-style loss, backward, AdamW."""
    cfg = model.cfg
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        with amp:
            loss = (model(x, t, y)[:, : cfg.in_channels].float() - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _trajectory(model: torch.nn.Module, options: dict[str, Any], batch: int, dev: torch.device) -> Callable[[], None]:
    """One whole trajectory of ``batch`` images through the engine's sampler with ``options``."""
    from mpdit_bench.engine.sampling import make_labels, sample_indices

    cfg = model.cfg
    labels = make_labels(batch, cfg.num_classes, "random", options["seed"])
    model.eval()
    return lambda: sample_indices(model, cfg, range(batch), labels, options, dev)


def sampling_flops(model: torch.nn.Module, steps: int, cfg_scale: float) -> dict[str, Any]:
    """What one image costs over a ``steps``-step Euler trajectory: GFLOPs per network evaluation averaged
    over the evaluation times (each in its stage), the guidance passes per evaluation, and their product."""
    from mpdit_bench.counting import trajectory_flops
    from mpdit_bench.engine.sampling import time_grid

    times = time_grid(steps)[:-1]  # Euler evaluates at the start of every interval
    schedule = getattr(model, "schedule", None)
    fractions = None if schedule is None else schedule.evaluation_fractions(times)
    per_evaluation = trajectory_flops(model, fractions) / 1e9
    passes = 1 if float(cfg_scale) == 1.0 else 2  # w = 1 skips the null batch
    return {"gflops_per_evaluation": per_evaluation, "guidance_passes": passes,
            "evaluations_per_image": steps, "gflops_per_image": per_evaluation * steps * passes,
            "stage_evaluation_fractions": None if fractions is None else list(fractions)}


def bench_model(name: str, mode: str, batch: int, overrides: dict[str, Any], resolution: int = 256,
                warmup: int = 2, reps: int = 5, iters: int = 5, sample_steps: int = 250, cfg_scale: float = 1.5,
                device: str = "auto") -> dict[str, Any]:
    """Throughput and peak memory of one model; see the module docstring for what is measured."""
    if mode not in MODES:
        raise ValueError(f"bench mode {mode!r} is invalid; allowed: {', '.join(MODES)}")
    dev = resolve_device(device)
    cfg = model_config(name, resolution, **overrides)
    release_host_memory()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    rss = RssPeak() if dev.type == "cpu" else None
    baseline = rss.rss() if rss else 0
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, cfg.in_channels, cfg.input_size, cfg.input_size), generator=gen).to(dev)
    y = torch.randint(cfg.num_classes, (batch,), generator=gen).to(dev)
    t = torch.rand(batch, generator=gen).to(dev)
    if mode == "sample":  # checked before the model is built
        options = check_options({"steps": sample_steps, "cfg_scale": cfg_scale, "batch_size": batch},
                                "bench sample (--sample-steps, --batch)")
    precision = applied(SETTINGS) if mode == "sample" else contextlib.nullcontext()  # as `mpdit-bench sample` runs
    times: list[float] = []
    with rss if rss else contextlib.nullcontext(), precision:
        torch.manual_seed(0)
        model = build_model(cfg).to(dev)
        if mode == "train":
            one = _training_step(model, x, t, y, amp)
            warm = one
        else:
            one = _trajectory(model, options, batch, dev)
            warm = _trajectory(model, {**options, "steps": min(sample_steps, WARMUP_TRAJECTORY_STEPS)}, batch, dev)
        for _ in range(warmup):
            warm()
        for _ in range(reps):
            synchronize(dev)
            start = time.perf_counter()
            for _ in range(iters):
                one()
            synchronize(dev)
            times.append((time.perf_counter() - start) / iters)
    per_iter = statistics.median(times)
    out = {"model": name, "mode": mode, "batch": batch, "resolution": resolution, "device": str(dev),
           "params": param_count(model), "gflops_per_image": model.flops() / 1e9, "seconds_per_iter_median": per_iter,
           "seconds_per_iter_all": times, "warmup": warmup, "reps": reps, "iters_per_rep": iters,
           "config": cfg.to_dict()}
    if mode == "train":
        out.update(steps_per_s=1.0 / per_iter, images_per_s=batch / per_iter)
    else:
        out.update(sampling_flops(model, sample_steps, cfg_scale))
        out.update(images_per_s=batch / per_iter, evals_per_s=sample_steps / per_iter, sample_steps=sample_steps,
                   cfg_scale=cfg_scale, sampler=options["sampler"], timed_unit="one whole trajectory",
                   precision="fp32 (TF32 matmuls)" if dev.type == "cuda" else "fp32")
    if dev.type == "cuda":
        out.update(peak_memory_bytes=torch.cuda.max_memory_allocated(dev),
                   memory_method="torch.cuda.max_memory_allocated")
    else:
        out.update(peak_memory_bytes=max(rss.peak - baseline, 0),
                   memory_method="peak RSS above the pre-build baseline (/proc/self/statm, 2 ms polling)")
    del model
    release_host_memory()
    return out


def _warm_runtime(device: str) -> None:
    """One tiny training step before measuring, so that one-time lazy set-up (thread pools, kernels,
    allocator arenas) is not charged to whichever model is measured first."""
    dev = resolve_device(device)
    layer = torch.nn.Linear(64, 64).to(dev)
    opt = torch.optim.AdamW(layer.parameters())
    layer(torch.randn(8, 64, device=dev)).square().mean().backward()
    opt.step()
    del layer, opt
    release_host_memory()


def compare(mode: str, model_a: str, model_b: str, batch: int, overrides: dict[str, Any] | None = None,
            results_dir: str | Path = "results/bench", **kwargs: Any) -> dict[str, Any]:
    """Benchmark A then B with identical settings; ratios are A / B; JSON written to ``results_dir``."""
    overrides = overrides or {}
    _warm_runtime(kwargs.get("device", "auto"))
    a = bench_model(model_a, mode, batch, overrides, **kwargs)
    b = bench_model(model_b, mode, batch, overrides, **kwargs)
    result = {"mode": mode, "a": a, "b": b,
              "throughput_ratio_a_over_b": a["images_per_s"] / b["images_per_s"],
              "gflops_ratio_a_over_b": a["gflops_per_image"] / b["gflops_per_image"],
              "memory_ratio_a_over_b": (a["peak_memory_bytes"] / b["peak_memory_bytes"]
                                        if b["peak_memory_bytes"] else None),
              "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out_dir = Path(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    slug = lambda s: s.replace("/", "_").replace("+", "p")  # noqa: E731
    path = out_dir / f"{stamp}_{mode}_{slug(model_a)}_vs_{slug(model_b)}.json"
    write_text_atomic(path, json.dumps(result, indent=2))
    result["path"] = str(path)
    return result


__all__ = ["MODES", "bench_model", "compare", "sampling_flops"]
