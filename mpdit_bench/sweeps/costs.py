"""Cost estimates of a run (compute and device-hours) from its analytic counts (``counting.analytic_counts``).

Used by ``sweep --dry-run`` before anything is trained.
"""

from __future__ import annotations

from typing import Any


# Assumed sustained throughput, in the GFLOPs convention of the tables (one multiply-add = one FLOP):
# A100 bf16 dense peak is 312 TFLOP/s = 156 T multiply-add/s; assume 40% of it in training.
# (training, sampling). CPU: the ablation_k CPU sweep (batch 32 training, batch 64 sampling) sustained
# 42-46 G in training and ~40 G in sampling on 2 cores.
THROUGHPUT = {"paper": (0.4 * 156e12, 0.4 * 156e12), "cpu": (40e9, 40e9)}
# Evaluation per run on 2 CPU cores: 100 samples, proxy metrics and Inception FID against 500 cached
# reference images: 31-35 s measured. The first evaluation on a fresh machine also converts the Inception
# weights, trains the proxy classifier and extracts the reference features once: 144 s measured.
EVAL_SECONDS = {"cpu": 35.0, "paper": 0.0}
FIRST_EVAL_EXTRA_SECONDS = {"cpu": 110.0, "paper": 0.0}
THROUGHPUT_NOTE = ("assumed sustained throughput per device, in multiply-adds/s: A100 bf16 at 40% of peak "
                   "(62 T); 2 CPU cores (measured): 40 G training and sampling; training = 3 x forward; "
                   "CPU evaluation 35 s per run, plus 110 s once on a fresh machine (measured); "
                   "paper evaluation not included")


def estimate_cost(counts: dict[str, float], train: dict[str, Any], sample: dict[str, Any], scale: str,
                  nproc: int, train_flops_per_sample: float | None = None) -> dict[str, float]:
    """Training / sampling compute and the device-hours it takes at the assumed throughput.
    ``train_flops_per_sample`` (FLOPs) replaces 3 x forward where the forward varies (PPFlow's stage mix)."""
    images = train["steps"] * train["global_batch"]
    per_sample = 3 * counts["gflops"] if train_flops_per_sample is None else train_flops_per_sample / 1e9
    train_gflop = per_sample * images
    scales = sample.get("cfg_scale", 1.0)
    guided = any(float(w) != 1.0 for w in (scales if isinstance(scales, list) else [scales]))
    passes = 2 if guided else 1  # an upper bound with per-stage scales: unguided stages run one pass
    sample_gflop = counts["gflops"] * sample["num"] * sample.get("steps", 250) * passes
    train_rate, sample_rate = THROUGHPUT[scale]
    seconds = train_gflop * 1e9 / train_rate + sample_gflop * 1e9 / sample_rate + EVAL_SECONDS[scale]
    return {"images_seen": images, "train_pflop": train_gflop / 1e6, "sample_pflop": sample_gflop / 1e6,
            "device_hours": seconds / 3600, "wall_hours": seconds / 3600 / max(1, nproc)}
