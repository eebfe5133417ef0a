"""Start a PPFlow model from a trained model of the suite without a patch schedule (PPFlow's recipe).

The finest stage of a schedule model is the source model itself (same keys), so its weights are copied.
The coarser stages get, following PPFlow:
- patchify "average": the space-to-depth conv sees fh * fw copies of each input channel, each with the
  source weight / (fh * fw), i.e. the source patch embedding of the block-averaged input;
- unpatchify "copy": every output row of the source final Linear repeated for the fh * fw sub-pixels,
  i.e. the source prediction upsampled by nearest neighbour;
- for the MPDiT coarse path (several levels, our combination), the stage's linear upsample block repeats
  the source's f x f expansion over the larger F x F block (each sub-block expands as the source did);
- the level embedding as ``level_embed_init`` says: zero (the suite's default), so that the fine stage
  reproduces the source model exactly, or N(0, 0.02) as PPFlow's ``--initialize_from`` leaves it (the same
  draw, from ``seed``, for the model and its EMA).

Checkpoints: the suite's format (mpdit_bench.checkpoint: "format", "step", "model", "ema", "model_config",
"run_config", "data_info"), read with ``torch.load(weights_only=True)``; a foreign dict with the state dict
under "model" works too when the source config is named on the command line. The output is an engine
checkpoint at step 0 (no optimizer or RNG state): ``mpdit-bench sample`` reads it, and a run fine-tunes it
with ``train.init_from: NEW.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mpdit_bench import checkpoint
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.models import build_model, model_config
from mpdit_bench.components.embeddings import frozen_pos_embed
from mpdit_bench.ppflow.modules import init_level_embed
from mpdit_bench.ppflow.schedule import PatchSchedule, default_schedule

STAGE_PREFIXES = ("stage_patchify.", "stage_pos_embed.", "stage_finals.", "stage_upsamples.", "level_embed.")


def ppflow_config(source: ModelConfig, levels: int = 2, **overrides: Any) -> ModelConfig:
    """The source config with PPFlow's schedule of ``levels`` stages (``overrides`` may change it)."""
    if source.time_patch_sizes:
        raise ConfigError("time_patch_sizes", list(source.time_patch_sizes),
                          "empty in the source model (it already has a patch schedule)")
    shapes, bounds = default_schedule(levels, source.patch_sizes[0])
    values = {"time_patch_sizes": shapes, "time_boundaries": bounds, **overrides}
    return source.replace(source="ppflow conversion", **values)


def _average_patchify(weight: torch.Tensor, k: int) -> torch.Tensor:
    """(D, C, p, p) -> (D, C k, p, p): channel c k + j = weight[:, c] / k (space_to_depth channel order)."""
    return weight.repeat_interleave(k, dim=1) / k


def _copy_unpatchify(tensor: torch.Tensor, p: int, channels: int, k: int) -> torch.Tensor:
    """Rows (p p C) -> (p p C k): row (i, c, j) = row (i, c); works for the weight (rows, D) and the bias."""
    rows = tensor.reshape(p * p, channels, *tensor.shape[1:])
    return rows.repeat_interleave(k, dim=1).reshape(p * p * channels * k, *tensor.shape[1:])


def _tile_upsample(tensor: torch.Tensor, dim: int, f: int, r: int) -> torch.Tensor:
    """Linear upsample rows (D f f) -> (D F F), F = f r: row (d, I, J) = row (d, I mod f, J mod f)."""
    rows = tensor.reshape(dim, f, f, *tensor.shape[1:]).repeat(1, r, r, *[1] * (tensor.dim() - 1))
    return rows.reshape(dim * f * f * r * r, *tensor.shape[1:])


def schedule_removed(cfg: ModelConfig) -> ModelConfig:
    """The model a schedule model is converted from: ``cfg`` without its stages."""
    return cfg.replace(source="ppflow conversion", time_patch_sizes=[], time_boundaries=[], level_embed_init="zero")


def convert_isotropic_to_ppflow(source: nn.Module | Mapping[str, torch.Tensor], ppflow_cfg: ModelConfig,
                                seed: int = 0) -> dict[str, torch.Tensor]:
    """State dict of a MultiPatchDiT(``ppflow_cfg``) initialised from ``source`` (a model without a
    schedule, or its state dict), the source being ``ppflow_cfg`` with the schedule removed; ``seed`` draws
    a "normal" level embedding."""
    if not ppflow_cfg.time_patch_sizes:
        raise ConfigError("time_patch_sizes", [], "a patch schedule in the target config")
    base_cfg = schedule_removed(ppflow_cfg)
    if isinstance(source, nn.Module):
        if getattr(source, "cfg", base_cfg) != base_cfg:
            raise ConfigError("model_config", source.cfg.to_dict(),
                              f"the target config without its schedule: {base_cfg.to_dict()}")
        source = source.state_dict()
    src = {k: v.detach().cpu() for k, v in source.items()}
    with torch.device("meta"):  # shapes and key names only
        expected = build_model(ppflow_cfg).state_dict()

    sched, D = PatchSchedule.from_config(ppflow_cfg), ppflow_cfg.hidden_size
    p, C_out = sched.base, ppflow_cfg.out_channels
    out: dict[str, torch.Tensor] = {}
    for key, like in expected.items():
        if key.startswith(STAGE_PREFIXES):
            continue
        if key not in src or src[key].shape != like.shape:
            found = None if key not in src else tuple(src[key].shape)
            brief = {k: base_cfg.to_dict()[k] for k in ("depths", "patch_sizes", "hidden_size", "class_tokens",
                                                         "modulation", "learn_sigma", "num_classes", "input_size")}
            raise ConfigError(key, found, f"a source tensor of shape {tuple(like.shape)} (is the checkpoint "
                                          f"a model with {brief}?)")
        out[key] = src[key].clone()
    for s in range(sched.num_stages - 1):
        fh, fw = sched.merge(s)
        k = fh * fw
        out[f"stage_patchify.{s}.embed.proj.weight"] = _average_patchify(src["patch_embed.proj.weight"], k)
        out[f"stage_patchify.{s}.embed.proj.bias"] = src["patch_embed.proj.bias"].clone()
        gh, gw = ppflow_cfg.input_size // (p * fh), ppflow_cfg.input_size // (p * fw)
        out[f"stage_pos_embed.{s}"] = frozen_pos_embed(D, gh, grid_w=gw, stride=(fh, fw)).data
        if ppflow_cfg.num_levels == 1:
            for part in ("weight", "bias"):
                out[f"stage_finals.{s}.linear.{part}"] = _copy_unpatchify(src[f"final.linear.{part}"], p, C_out, k)
        else:
            out.update(_stage_upsample(src, ppflow_cfg, s, fh))
    out["level_embed.weight"] = init_level_embed(torch.empty(sched.num_stages, D), ppflow_cfg.level_embed_init,
                                                 torch.Generator().manual_seed(seed))
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ConfigError("model", missing, "keys the conversion knows how to fill (internal error)")
    return out


def _stage_upsample(src: Mapping[str, torch.Tensor], cfg: ModelConfig, stage: int, merge: int
                    ) -> dict[str, torch.Tensor]:
    """The source's upsamples.0 for a coarse path ``merge`` times coarser (linear upsample only)."""
    if cfg.upsample != "linear":
        raise ConfigError("upsample", cfg.upsample, "linear (the only upsample block conversion can widen)")
    f = cfg.patch_sizes[0] // cfg.patch_sizes[1]
    out = {}
    for key, value in src.items():
        if key.startswith("upsamples.0."):
            name = key[len("upsamples.0."):]
            new = f"stage_upsamples.{stage}.{name}"
            out[new] = (_tile_upsample(value, cfg.hidden_size, f, merge) if name.startswith("expand.linear.")
                        else value.clone())
    return out


# ---- checkpoint files ----------------------------------------------------------------------------------------
def load_source(path: str | Path, model: str | None = None, overrides: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, Any], ModelConfig]:
    """(checkpoint dict, source config): config from the checkpoint's "model_config", else from ``model``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("checkpoint", str(path), "an existing checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupted or foreign file: say which and why
        raise ConfigError("checkpoint", str(path), f"a torch checkpoint readable with weights_only=True "
                                                    f"({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ConfigError("model", type(ckpt).__name__, "a checkpoint dict with the state dict under 'model'",
                          str(path))
    if isinstance(ckpt.get("model_config"), dict):
        checkpoint.load_plugins(ckpt, path)
        return ckpt, ModelConfig.from_dict(ckpt["model_config"], source=f"{path} model_config")
    if model is None:
        raise ConfigError("model_config", None, "a source config in the checkpoint, or --model NAME [--set ...]",
                          str(path))
    return ckpt, model_config(model, **(overrides or {}))


def convert_checkpoint(path: str | Path, out: str | Path, levels: int = 2, model: str | None = None,
                       overrides: Mapping[str, Any] | None = None,
                       boundaries: list[float] | None = None, level_embed_init: str = "zero",
                       seed: int = 0) -> dict[str, Any]:
    """Convert the checkpoint at ``path`` ("model" and, when present, "ema") and write ``out`` atomically.

    The result is a starting point for fine-tuning: step 0, no optimizer or RNG state."""
    out = checkpoint.output_path(out)
    ckpt, source_cfg = load_source(path, model, overrides)
    extra = {} if boundaries is None else {"time_boundaries": boundaries}
    cfg = ppflow_config(source_cfg, levels, level_embed_init=level_embed_init, **extra)
    new: dict[str, Any] = {
        "format": checkpoint.FORMAT, "step": 0, "epoch": 0, "batch_in_epoch": 0,
        "model": convert_isotropic_to_ppflow(ckpt["model"], cfg, seed),
        "model_config": cfg.to_dict(),
        "converted_from": {"path": str(path), "step": ckpt.get("step"), "config_hash": source_cfg.config_hash(),
                           "to": "ppflow", "levels": levels},
    }
    if isinstance(ckpt.get("ema"), dict):
        new["ema"] = convert_isotropic_to_ppflow(ckpt["ema"], cfg, seed)
    for key in ("data_info",):
        if key in ckpt:
            new[key] = ckpt[key]
    if isinstance(ckpt.get("run_config"), dict):
        run = dict(ckpt["run_config"])
        run["model_overrides"] = {**(run.get("model_overrides") or {}),
                                  "time_patch_sizes": list(cfg.time_patch_sizes),
                                  "time_boundaries": list(cfg.time_boundaries)}
        if cfg.level_embed_init != "zero":
            run["model_overrides"]["level_embed_init"] = cfg.level_embed_init
        new["run_config"] = run
    out = checkpoint.save_atomic(new, out)
    return {"out": str(out), "model_config": cfg.to_dict(), "config_hash": cfg.config_hash(),
            "tensors": len(new["model"]), "ema": "ema" in new}


__all__ = ["convert_isotropic_to_ppflow", "convert_checkpoint", "ppflow_config", "default_schedule",
           "load_source", "schedule_removed"]
