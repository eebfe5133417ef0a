"""Model building blocks, the multi-patch model and named presets.

    >>> from mpdit_bench.models import create_model, list_models
    >>> model = create_model("MPDiT-B", refine_depth=4)

Presets name architectures only; the figures the papers published for them are ``mpdit_bench.paper.figures``.
"""

from __future__ import annotations

from typing import Any

from mpdit_bench.config import ModelConfig
from mpdit_bench.models.multipatch import MultiPatchDiT
from mpdit_bench.models.presets import get_preset, list_models, model_config


def build_model(cfg: ModelConfig) -> MultiPatchDiT:
    """Build the network a validated ModelConfig describes (one class for DiT, MPDiT and PPFlow)."""
    return MultiPatchDiT(cfg)


def create_model(name: str, resolution: int | None = None, **overrides: Any) -> MultiPatchDiT:
    """timm-style: a preset by name, with config overrides, built."""
    return build_model(model_config(name, resolution, **overrides))


__all__ = ["MultiPatchDiT", "build_model", "create_model", "get_preset", "list_models", "model_config"]
