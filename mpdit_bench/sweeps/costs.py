"""Cost estimates of a run (compute, device-hours, wall time) from its analytic counts
(``counting.analytic_counts``). Used by ``sweep --dry-run`` before anything is trained, and to give the
workers of a local sweep the longest runs first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Sustained multiply-adds/s per device (one multiply-add = one FLOP, the tables' convention), as
# (training, sampling). Paper scale: A100 bf16 dense peak 312 TFLOP/s = 156 T multiply-add/s, assumed 40 %.
PAPER_RATE = (0.4 * 156e12, 0.4 * 156e12)
# CPU scale, per worker by its threads, measured on the ablation_k CPU sweep on 2 cores (docs/SWEEPS.md):
# one worker of 2 threads, or each of two workers of 1 thread. More threads are assumed to add what the
# second one did.
CPU_RATES = {1: (19e9, 18e9), 2: (34e9, 30e9)}
# Evaluation of a CPU-scale run (proxy metrics, Inception FID against 500 cached reference images,
# 200-replicate bootstrap) in seconds per sample, by the worker's threads: 100 samples took 22.9 s with
# one thread and 15.7 s with two, 32 samples 7-8 s with one. The first evaluation on a fresh machine
# adds the Inception conversion and the reference features once (91 s measured with one thread).
CPU_EVAL_SECONDS_PER_SAMPLE = {1: 0.22, 2: 0.155}
FIRST_EVAL_EXTRA_SECONDS = {"cpu": 90.0, "paper": 0.0}
# The held-out loss of one CPU-scale checkpoint (64 images x 8 times, 1000-replicate bootstrap): about 8 s
# on one thread; taken as the same with two (the small forward passes barely use a second one).
CPU_HELDOUT_SECONDS = 8.0
THROUGHPUT_NOTE = ("assumed sustained throughput per device, in multiply-adds/s: A100 bf16 at 40% of peak "
                   "(62 T); CPU per worker (measured on 2 cores): training 34 G with 2 threads, 19 G with 1, "
                   "sampling 30 G and 18 G; training = 3 x forward; CPU evaluation 0.155 s per sample with 2 "
                   "threads, 0.22 s with 1, plus 90 s once on a fresh machine (measured; the final held-out loss not "
                   "included); each curve point of eval.every before the last step: 8 s of held-out loss on "
                   "CPU, and its samples' sampling and evaluation; paper evaluation not included")


@dataclass
class CurvePlan:
    """What a run's curve along training evaluates besides its last step: ``points`` checkpoints, each
    for its held-out loss (``heldout``) and ``samples`` samples for its sample metrics (0: none)."""

    points: int = 0
    heldout: bool = False
    samples: int = 0


def rates(scale: str, threads: int) -> tuple[float, float, float]:
    """(training, sampling) multiply-adds/s and evaluation seconds per sample of a worker of ``threads``."""
    if scale == "paper":
        return (*PAPER_RATE, 0.0)
    if threads <= 2:
        return (*CPU_RATES[max(1, threads)], CPU_EVAL_SECONDS_PER_SAMPLE[max(1, threads)])
    (train1, sample1), (train2, sample2) = CPU_RATES[1], CPU_RATES[2]
    extra = threads - 2
    return train2 + extra * (train2 - train1), sample2 + extra * (sample2 - sample1), CPU_EVAL_SECONDS_PER_SAMPLE[2]


def estimate_cost(counts: dict[str, float], train: dict[str, Any], sample: dict[str, Any], scale: str,
                  nproc: int, train_flops_per_sample: float | None = None, threads: int = 2,
                  curve: CurvePlan | None = None) -> dict[str, float]:
    """Training / sampling compute and the device-hours it takes at the assumed throughput of a worker
    with ``threads`` CPU threads. ``train_flops_per_sample`` (FLOPs) replaces 3 x forward where the
    forward varies (PPFlow's stage mix). ``curve``: the points evaluated along training besides the last
    step (whose metrics are the run's own)."""
    images = train["steps"] * train["global_batch"]
    per_sample = 3 * counts["gflops"] if train_flops_per_sample is None else train_flops_per_sample / 1e9
    train_gflop = per_sample * images
    scales = sample.get("cfg_scale", 1.0)
    guided = any(float(w) != 1.0 for w in (scales if isinstance(scales, list) else [scales]))
    passes = 2 if guided else 1  # an upper bound with per-stage scales: unguided stages run one pass
    per_image_gflop = counts["gflops"] * sample.get("steps", 250) * passes
    sample_gflop = per_image_gflop * sample["num"]
    train_rate, sample_rate, eval_per_sample = rates(scale, threads)
    seconds = train_gflop * 1e9 / train_rate + sample_gflop * 1e9 / sample_rate + eval_per_sample * sample["num"]
    curve = curve or CurvePlan()
    curve_images = curve.points * curve.samples
    curve_seconds = (curve.points * (CPU_HELDOUT_SECONDS if curve.heldout and scale == "cpu" else 0.0)
                     + per_image_gflop * curve_images * 1e9 / sample_rate + eval_per_sample * curve_images)
    seconds += curve_seconds
    return {"images_seen": images, "train_pflop": train_gflop / 1e6, "sample_pflop": sample_gflop / 1e6,
            "curve_points": curve.points, "curve_hours": curve_seconds / 3600,
            "device_hours": seconds / 3600, "wall_hours": seconds / 3600 / max(1, nproc)}


def concurrent_workers(workers: int, cores: int | None) -> int:
    """How many of ``workers`` local workers make progress at once: workers beyond the cores only share them."""
    return max(1, min(workers, cores or workers))


def sweep_wall_hours(rows: list[dict[str, Any]], workers: int, scale: str, cores: int | None = None) -> float:
    """Wall time of a local sweep whose ``workers`` share the runs (longest first), plus the first
    evaluation's one-off cost: the runs' wall-hours spread over the workers that run at once on ``cores``,
    never less than the longest."""
    runs = [r["wall_hours"] for r in rows]
    spread = max(sum(runs) / concurrent_workers(workers, cores), max(runs, default=0.0))
    return spread + FIRST_EVAL_EXTRA_SECONDS[scale] / 3600
