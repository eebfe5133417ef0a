"""Held-out flow-matching loss on a fixed grid, from a finished checkpoint: a low-variance CPU metric.

The grid is the same for every run: the first ``IMAGES`` Fashion-MNIST test images with their labels,
``TIMES`` values t_j = (j + 1/2) / TIMES spanning (0, 1), and one noise tensor per (image, t) from a
generator seeded ``GRID_SEED``; no label is dropped. A run's loss is the velocity MSE of its EMA weights
(the weights sampling uses), averaged over the grid. Nothing is sampled, so two runs differ only by
what they learned, and the loss per image is kept for a 95 % bootstrap interval over the test images;
the image resamples come from a fixed seed, so two runs' replicates are paired image by image.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpdit_bench.evaluation import bootstrap as B
from mpdit_bench.evaluation.metric_table import HELDOUT_LOSS

IMAGES, TIMES, GRID_SEED = 64, 8, 0
BATCH = 64


def grid(images: int = IMAGES, times: int = TIMES, seed: int = GRID_SEED):
    """(x (N, 1, 32, 32) in [-1, 1], labels (N,), t (T,), noise (N, T, 1, 32, 32)): identical on every call."""
    from mpdit_bench.data.fashion_mnist import load_arrays

    pixels, labels = load_arrays("test")
    x = torch.from_numpy(pixels[:images].astype(np.float32) / 127.5 - 1.0)[:, None]
    t = (torch.arange(times, dtype=torch.float64) + 0.5) / times
    noise = torch.randn((images, times, *x.shape[1:]), generator=torch.Generator().manual_seed(seed))
    return x, torch.from_numpy(labels[:images].astype(np.int64)), t.float(), noise


@torch.no_grad()
def per_image_losses(model: torch.nn.Module, channels: int, images: int = IMAGES, times: int = TIMES) -> np.ndarray:
    """(N,) velocity MSE of each test image, averaged over the t grid."""
    from mpdit_bench.engine.flow import interpolate

    x, y, t, noise = grid(images, times)
    losses = torch.zeros(images, dtype=torch.float64)
    for j in range(times):
        for start in range(0, images, BATCH):
            rows = slice(start, start + BATCH)
            n, z = noise[rows, j], x[rows]
            tt = t[j].expand(len(z))
            pred = model(interpolate(z, n, tt), tt, y[rows])[:, :channels]
            losses[rows] += ((pred.float() - (n - z)) ** 2).flatten(1).mean(1).double()
    return (losses / times).numpy()


def heldout_loss(ckpt: str | Path, bootstrap: int = 1000, images: int = IMAGES, times: int = TIMES) -> dict[str, Any]:
    """The loss of a checkpoint on the grid, its interval over test images, and what defines the grid."""
    from mpdit_bench import checkpoint
    from mpdit_bench.engine.sampling import load_sampling_model

    start = time.time()
    state = checkpoint.load(ckpt)
    data = (state.get("data_info") or {}).get("name")
    if data not in (None, "fashion-mnist"):
        return {HELDOUT_LOSS: None, "heldout_note": f"needs Fashion-MNIST test images; this run trained on {data}"}
    model, cfg = load_sampling_model(state, use_ema=True, device=torch.device("cpu"))
    losses = per_image_losses(model, cfg.in_channels, images, times)
    out: dict[str, Any] = {HELDOUT_LOSS: float(losses.mean()),
                           "heldout_grid": {"images": images, "times": times, "seed": GRID_SEED,
                                            "weights": "ema" if "ema" in state else "model"}}
    if bootstrap:
        draws = B.Draws.make(bootstrap, images, None)
        B.add_intervals(out, {HELDOUT_LOSS: B.mean_replicates(losses, draws.samples)}, bootstrap)
    out["heldout_s"] = round(time.time() - start, 2)
    return out
