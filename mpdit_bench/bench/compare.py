"""Throughput and peak memory of two models side by side, in one process, at the same batch.

    train:  one AdamW step (forward, backward, update; bf16 autocast on GPU) on random latents
    sample: one guided velocity evaluation (conditional + null batch, as CFG samples), reported as
            images/s for a whole trajectory of ``sample_steps`` evaluations

Each model gets ``warmup`` untimed iterations, then ``reps`` timed repetitions of ``iters`` iterations.
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
from mpdit_bench.files import write_text_atomic
from mpdit_bench.models import build_model, model_config

MODES = ("train", "sample")


def _iteration(model: torch.nn.Module, mode: str, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, amp,
               cfg_scale: float) -> Callable[[], None]:
    """One timed unit: a training step (forward, backward, AdamW) or one guided velocity evaluation."""
    from mpdit_bench.engine.sampling import guided_velocity

    cfg = model.cfg
    if mode == "train":
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            with amp:
                loss = (model(x, t, y)[:, : cfg.in_channels].float() - x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step
    model.eval()
    velocity = guided_velocity(model, cfg.in_channels, cfg.num_classes, cfg_scale)

    def evaluation() -> None:
        with torch.no_grad(), amp:
            velocity(x, 0.5, y)
    return evaluation


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
    times: list[float] = []
    with rss if rss else contextlib.nullcontext():
        torch.manual_seed(0)
        model = build_model(cfg).to(dev)
        one = _iteration(model, mode, x, t, y, amp, cfg_scale)
        for _ in range(warmup):
            one()
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
        out.update(evals_per_s=1.0 / per_iter, images_per_s=batch / (per_iter * sample_steps),
                   sample_steps=sample_steps, cfg_scale=cfg_scale)
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


__all__ = ["MODES", "bench_model", "compare"]
