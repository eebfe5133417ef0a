"""Suite weights written in a source's own format: the inverse of import (renames back, the same rewrites,
which are their own inverse). Its use: the tiny, randomly initialised files in each source's format that a
CPU smoke of the released-checkpoint path imports, and handing a suite-trained model to a source's sampler."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

import torch

from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench import checkpoint
from mpdit_bench.imports.common import ARCHITECTURE_KEYS, ImportRefused
from mpdit_bench.imports.importer import SOURCES

KINDS = ("released", "train")


def source_state(state: Mapping[str, torch.Tensor], cfg: ModelConfig, source: str) -> dict[str, torch.Tensor]:
    """A suite state dict of ``cfg`` -> ``source``'s state dict of the same function (float32)."""
    module = SOURCES[source]
    suite = {k: v.detach().clone().float().cpu() for k, v in state.items()}
    module.rewrite(suite, cfg)
    return {theirs: suite[ours] for theirs, ours in module.source_keys(cfg).items()}


def random_suite_model(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """``cfg`` with every trainable weight N(0, 0.02) (no zero-initialised output: a non-trivial function)."""
    from mpdit_bench.models import build_model

    torch.manual_seed(seed)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def source_checkpoint(cfg: ModelConfig, source: str, kind: str = "released",
                      state: Mapping[str, torch.Tensor] | None = None, seed: int = 0) -> Any:
    """The object ``source`` saves: a bare state dict ("released") or its train.py dict ("train").
    ``state``: suite weights of ``cfg`` (default: ``random_suite_model(cfg, seed)``)."""
    if source not in SOURCES:
        raise ConfigError("source", source, ", ".join(SOURCES))
    if kind not in KINDS:
        raise ConfigError("kind", kind, ", ".join(KINDS))
    module = SOURCES[source]
    args = module.train_args(cfg)
    _check_representable(cfg, module, args)
    weights = source_state(random_suite_model(cfg, seed).state_dict() if state is None else state, cfg, source)
    if kind == "released":
        return weights
    obj: dict[str, Any] = {"model": weights, "ema": {k: v.clone() for k, v in weights.items()},
                           "opt": {"state": {}, "param_groups": []}, "args": argparse.Namespace(**args)}
    if "train_steps" in module.TRAIN_KEYS:
        obj.update(epoch=0, train_steps=0)
    return obj


def write_source_checkpoint(cfg: ModelConfig, source: str, out: str | Path, kind: str = "released",
                            state: Mapping[str, torch.Tensor] | None = None, seed: int = 0) -> Path:
    return checkpoint.save_atomic(source_checkpoint(cfg, source, kind, state, seed), out)


def _check_representable(cfg: ModelConfig, module, args: dict[str, Any]) -> None:
    """Refuse configs the source's network cannot express: what import would read back must be ``cfg``."""
    with torch.device("meta"):
        from mpdit_bench.models import build_model

        suite = build_model(cfg).state_dict()
    names = module.source_keys(cfg) if _keys_cover(module, cfg, suite) else None
    if names is None:
        raise ConfigError("model_config", _brief(cfg), f"a model {module.NAME}'s network can express "
                                                       f"(its presets {module.FAMILY}*)")
    theirs = {k: torch.empty(suite[ours].shape, device="meta") for k, ours in names.items()}
    try:
        read = module.architecture(theirs, args, "(export check)", cfg.num_heads, None).to_dict()
    except ImportRefused as err:
        raise ConfigError("model_config", _brief(cfg), f"a model {module.NAME}'s network can express "
                                                       f"(its presets {module.FAMILY}*): {err.reason}") from None
    differ = {k: cfg.to_dict()[k] for k in ARCHITECTURE_KEYS if read[k] != cfg.to_dict()[k]}
    if cfg.time_embedder == "mlp" and cfg.time_embed_scale != read["time_embed_scale"]:
        differ["time_embed_scale"] = cfg.time_embed_scale
    if differ:
        raise ConfigError("model_config", differ, f"values {module.NAME}'s network has: "
                                                  f"{ {k: read[k] for k in differ} }")


def _keys_cover(module, cfg: ModelConfig, suite: Mapping[str, torch.Tensor]) -> bool:
    try:
        return sorted(module.source_keys(cfg).values()) == sorted(suite)
    except (ValueError, IndexError):
        return False


def _brief(cfg: ModelConfig) -> dict[str, Any]:
    return {k: cfg.to_dict()[k] for k in ("depths", "patch_sizes", "modulation", "class_tokens", "time_patch_sizes")}


__all__ = ["KINDS", "random_suite_model", "source_checkpoint", "source_state", "write_source_checkpoint"]
