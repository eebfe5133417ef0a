"""Model building blocks, the multi-patch model and named presets.

    >>> from mpdit_bench.models import create_model, list_models
    >>> model = create_model("MPDiT-B", refine_depth=4)
"""

from __future__ import annotations

from typing import Any

from mpdit_bench.config import ModelConfig
from mpdit_bench.models.presets import get_preset, list_models, model_config, paper_figures


def build_model(cfg: ModelConfig):
    """Build the network a validated config describes (a patch schedule over time makes it PPFlow's)."""
    from mpdit_bench.models.multipatch import MultiPatchDiT

    if cfg.time_patch_sizes:
        from mpdit_bench.models.schedule import PatchScheduleDiT

        return PatchScheduleDiT(cfg)
    return MultiPatchDiT(cfg)


def create_model(name: str, resolution: int | None = None, **overrides: Any):
    """timm-style: a preset by name, with config overrides, built."""
    return build_model(model_config(name, resolution, **overrides))


__all__ = ["build_model", "create_model", "get_preset", "list_models", "model_config", "paper_figures"]
