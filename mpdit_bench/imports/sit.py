"""SiT's formats: the released SiT-XL-2-256x256.pt (a bare state dict of EMA weights) and train.py's
{model, ema, opt, args}.

SiT is the suite's one-level model with per-block adaLN-Zero and a label embedding. Its conventions differ:
t = 0 is noise, raw t enters the sinusoid, and the network predicts data - noise. The import rewrites two
layers so that the suite's model at t is SiT's at 1 - t, negated: the time embedder's first Linear
(``reverse_sinusoid_input``) and the velocity rows of the output Linear (``negate_velocity_rows``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench.imports.common import (ImportRefused, grid_side, heads_for, indexed, negate_velocity_rows,
                                        reverse_sinusoid_input)

NAME = "sit"
FAMILY = "SiT-"  # preset names of this source
TRAIN_KEYS = frozenset({"model", "ema", "opt", "args"})
VAE_SCALE = 0.18215  # sd-vae latents times 0.18215, no mean
GUIDED_CHANNELS = 3  # their forward_with_cfg guides channels 0..2 of 4
_BLOCK_PARTS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def recognises(state: Mapping[str, torch.Tensor]) -> bool:
    return ("blocks.0.adaLN_modulation.1.weight" in state and "level_embedder.embedding_table.weight" not in state
            and "x_embedder.proj1.weight" not in state)


def backbone(state: Mapping[str, torch.Tensor], args: dict[str, Any] | None, path: str | Path,
             num_heads: int | None, expect_cfg: ModelConfig | None, pos_key: str) -> dict[str, Any]:
    """The config values of the isotropic SiT backbone (PPFlow's too)."""
    for key in ("x_embedder.proj.weight", pos_key, "final_layer.linear.weight", "y_embedder.embedding_table.weight",
                "blocks.0.mlp.fc1.weight", "t_embedder.mlp.0.weight"):
        if key not in state:
            raise ImportRefused(path, f"missing keys [{key!r}] (a SiT-family checkpoint has it)")
    width, channels, patch = state["x_embedder.proj.weight"].shape[:3]
    side = grid_side(state[pos_key].shape[1], path, pos_key) * patch
    out_channels = state["final_layer.linear.weight"].shape[0] // (patch * patch)
    rows = state["y_embedder.embedding_table.weight"].shape[0]
    classes = args.get("num_classes") if args and isinstance(args.get("num_classes"), int) else rows - 1
    if rows != classes + 1:
        raise ImportRefused(path, f"the label table has {rows} rows for {classes} classes; the suite needs the "
                                  "null class row (classes + 1, SiT with class dropout > 0)")
    if args and isinstance(args.get("image_size"), int) and args["image_size"] // 8 != side:
        raise ImportRefused(path, f"args.image_size = {args['image_size']} (latent {args['image_size'] // 8}) but "
                                  f"the position table is for a {side} x {side} latent")
    return dict(depths=[indexed(state, "blocks.")], patch_sizes=[patch], hidden_size=width,
                num_heads=heads_for(width, num_heads, expect_cfg, path),
                mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / width,
                modulation="per_block", class_tokens=0, num_classes=classes, in_channels=channels,
                learn_sigma=out_channels == 2 * channels, input_size=side, time_embedder="mlp",
                time_embedder_layers=sum(1 for k in state if k.startswith("t_embedder.mlp.") and k.endswith(".weight")),
                time_embed_scale=1.0)


def architecture(state: Mapping[str, torch.Tensor], args: dict[str, Any] | None, path: str | Path,
                 num_heads: int | None, expect_cfg: ModelConfig | None) -> ModelConfig:
    values = backbone(state, args, path, num_heads, expect_cfg, "pos_embed")
    return ModelConfig.from_dict(values, source=f"{path} (SiT checkpoint)")


def backbone_keys(cfg: ModelConfig) -> dict[str, str]:
    """Their key -> the suite's for everything but the position tables."""
    names = {"y_embedder.embedding_table.weight": "class_embed.table.weight"}
    pairs = {"x_embedder.proj": "patch_embed.proj", "final_layer.linear": "final.linear",
             "final_layer.adaLN_modulation.1": "modulation.final"}
    for i in range(cfg.time_embedder_layers):
        pairs[f"t_embedder.mlp.{2 * i}"] = f"time_embed.mlp.{2 * i}"
    for i in range(cfg.depths[0]):
        pairs[f"blocks.{i}.adaLN_modulation.1"] = f"modulation.blocks.{i}"
        for part in _BLOCK_PARTS:
            pairs[f"blocks.{i}.{part}"] = f"levels.0.{i}.{part}"
    for theirs, ours in pairs.items():
        names[f"{theirs}.weight"], names[f"{theirs}.bias"] = f"{ours}.weight", f"{ours}.bias"
    return names


def source_keys(cfg: ModelConfig) -> dict[str, str]:
    return {"pos_embed": "pos_embed.0", **backbone_keys(cfg)}


def to_noise_at_one(suite: dict[str, torch.Tensor], cfg: ModelConfig, finals: dict[str, int]) -> None:
    """In place: suite(x, t) = -source(x, 1 - t) on the velocity channels. ``finals``: output Linear prefix ->
    sub-pixels per output channel (1, or fh * fw for a PPFlow coarse stage). Applied twice it is the
    identity, so the same rewrite also turns suite weights into the source's."""
    key = "time_embed.mlp.0.weight"
    suite[key] = reverse_sinusoid_input(suite[key], cfg.time_embed_scale)
    for prefix, merge in finals.items():
        for part in ("weight", "bias"):
            suite[f"{prefix}.{part}"] = negate_velocity_rows(suite[f"{prefix}.{part}"], cfg.in_channels * merge,
                                                             cfg.out_channels * merge)


def rewrite(suite: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    to_noise_at_one(suite, cfg, {"final.linear": 1})


def train_args(cfg: ModelConfig) -> dict[str, Any]:
    """What their train.py's args hold about the model (for files written in their format)."""
    return {"model": "SiT", "image_size": cfg.input_size * 8, "num_classes": cfg.num_classes, "cfg_scale": 4.0,
            "path_type": "Linear", "prediction": "velocity"}


def sample_defaults(args: dict[str, Any] | None) -> dict[str, Any]:
    """sample.py's ODE defaults: torchdiffeq's dopri5 (atol 1e-6, rtol 1e-3), 3 guided channels."""
    defaults: dict[str, Any] = {"cfg_channels": GUIDED_CHANNELS, "sampler": "dopri5"}
    if args and isinstance(args.get("cfg_scale"), (int, float)):
        defaults["cfg_scale"] = float(args["cfg_scale"])
    return defaults


def latent_normalisation(cfg: ModelConfig) -> tuple[list[float], list[float]]:
    return [0.0] * cfg.in_channels, [1.0 / VAE_SCALE] * cfg.in_channels
