"""The one CPU scale-down rule: how a paper-size model becomes the model a CPU-scale run trains."""

from __future__ import annotations

import math

from mpdit_bench.config import ModelConfig

CPU_GEOMETRY = {"in_channels": 1, "num_classes": 10, "input_size": 32}  # Fashion-MNIST padded to 32x32
# The resolution a CPU-scale run records: the image side whose latent (side / 8) is CPU_GEOMETRY's 32x32
# input, so a CPU model's token grids are those of the 256 px paper model it scales down.
CPU_RESOLUTION = 256


def cpu_scaled(cfg: ModelConfig) -> ModelConfig:
    """The CPU-scale model of a full-size config (docs/SWEEPS.md, "CPU scale rule").

    Width / 8 rounded down to a multiple of 32 (at least 64), head width 32, every level's block count
    halved (rounded up), and the Fashion-MNIST geometry: 1 channel, 10 classes, 32x32 input. The token
    grids stay those of a 256 px latent (p=4: 8x8, p=2: 16x16), so the multi-patch trade-off is kept.
    """
    hidden = max(64, (cfg.hidden_size // 8) // 32 * 32)
    return cfg.replace(source="cpu scale rule", hidden_size=hidden, num_heads=hidden // 32,
                       depths=[math.ceil(d / 2) for d in cfg.depths], **CPU_GEOMETRY)


def run_resolution(scale: str, resolution: int) -> int:
    """The resolution a run at ``scale`` records: the experiment's at paper scale, CPU_RESOLUTION on CPU."""
    return resolution if scale == "paper" else CPU_RESOLUTION
