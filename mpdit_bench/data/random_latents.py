"""A latent store of seeded random latents in a model's geometry, for measurements that need a Trainer (which
reads the data's channels, size and classes from its store) but feed it batches of their own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mpdit_bench.data.latents import LABELS, LATENTS, STATS


def write_random_latent_store(root: str | Path, channels: int, size: int, num_classes: int, num: int = 16,
                              seed: int = 0, dtype: str = "float16") -> Path:
    """``num`` standard-normal latents (channels, size, size) with uniform labels, unit statistics, and
    stats.json written last, as `extract-latents` writes a complete store."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    np.save(root / LATENTS, g.standard_normal((num, channels, size, size), np.float32).astype(dtype))
    np.save(root / LABELS, g.integers(0, num_classes, num).astype(np.int64))
    stats = {"mean": [0.0] * channels, "std": [1.0] * channels, "num": num, "resolution": size * 8,
             "classes": [str(c) for c in range(num_classes)], "dtype": dtype}
    (root / STATS).write_text(json.dumps(stats))
    return root


__all__ = ["write_random_latent_store"]
