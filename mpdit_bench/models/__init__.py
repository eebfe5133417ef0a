"""Model building blocks, the multi-patch model and named presets.

    >>> from mpdit_bench.models import create_model, list_models
    >>> model = create_model("MPDiT-B", refine_depth=4)

Preset names are imported lazily: components import ``mpdit_bench.counting.analytic`` while the registry is
still being filled, and presets validate against a complete registry.
"""

from __future__ import annotations

from typing import Any

_PRESET_NAMES = ("get_preset", "list_models", "model_config", "paper_figures")


def __getattr__(name: str) -> Any:
    if name in _PRESET_NAMES:
        from mpdit_bench.models import presets

        return getattr(presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(cfg):
    """Build the network a validated ModelConfig describes (one class for DiT, MPDiT and PPFlow)."""
    from mpdit_bench.models.multipatch import MultiPatchDiT

    return MultiPatchDiT(cfg)


def create_model(name: str, resolution: int | None = None, **overrides: Any):
    """timm-style: a preset by name, with config overrides, built."""
    from mpdit_bench.models.presets import model_config

    return build_model(model_config(name, resolution, **overrides))


__all__ = ["build_model", "create_model", *_PRESET_NAMES]
