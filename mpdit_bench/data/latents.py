"""A pre-extracted latent store: one file of latents, one of labels, and per-channel statistics.

    STORE/latents.npy   float16 (N, C, h, w), read as a memory map (never loaded whole)
    STORE/labels.npy    int64 (N,)
    STORE/stats.json    {"mean": [C], "std": [C], "num", "resolution", "classes", "vae", ...}
                        written last: its presence marks a complete store

The dataset normalises per channel, (z - mean) / std, as MPDiT does in place of SD's x0.18215.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

LATENTS, LABELS, STATS = "latents.npy", "labels.npy", "stats.json"


class LatentStoreError(FileNotFoundError):
    pass


def read_stats(root: str | Path) -> dict:
    root = Path(root)
    for name in (LATENTS, LABELS, STATS):
        if not (root / name).is_file():
            raise LatentStoreError(
                f"{root / name}: missing; a latent store (data.path) needs {LATENTS}, {LABELS} and {STATS}, "
                f"written by `mpdit-bench extract-latents --images DIR --vae PATH --out {root}`")
    stats = json.loads((root / STATS).read_text())
    for key in ("mean", "std", "classes"):
        if key not in stats:
            raise LatentStoreError(f"{root / STATS}: key {key!r} missing; allowed: a stats file written by extract-latents")
    return stats


class LatentStore(torch.utils.data.Dataset):
    """Normalised latents (C, h, w) float32 and integer labels; ``indices`` selects a subset."""

    def __init__(self, root: str | Path, indices: np.ndarray | None = None):
        self.root = Path(root)
        self.stats = read_stats(self.root)
        self.latents = np.load(self.root / LATENTS, mmap_mode="r")
        self.labels = np.load(self.root / LABELS)
        if len(self.latents) != len(self.labels):
            raise LatentStoreError(f"{self.root}: {len(self.latents)} latents but {len(self.labels)} labels")
        self.indices = np.arange(len(self.labels)) if indices is None else np.asarray(indices)
        c = self.latents.shape[1]
        self.mean = torch.tensor(self.stats["mean"], dtype=torch.float32).view(c, 1, 1)
        self.std = torch.tensor(self.stats["std"], dtype=torch.float32).view(c, 1, 1)
        self.channels, self.size = c, self.latents.shape[-1]
        self.num_classes = len(self.stats["classes"])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        z = torch.from_numpy(np.array(self.latents[j], dtype=np.float32))
        return (z - self.mean) / self.std, int(self.labels[j])
