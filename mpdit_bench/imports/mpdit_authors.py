"""The MPDiT authors' format: train.py's {model, ema, opt, epoch, train_steps, args} (sample.py reads "ema").

Their network is the suite's two-level MultiPatchDiT with shared modulation and class tokens, in the suite's
own conventions (t = 0 data, velocity noise - data), with raw t into the time embedder: the weights are
renamed, nothing is rewritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench.data.latents import MPDIT_AUTHORS_MEAN, MPDIT_AUTHORS_STD
from mpdit_bench.imports.common import ImportRefused, grid_side, heads_for, indexed

NAME = "mpdit"
FAMILY = "MPDiT-"  # preset names of this source
TRAIN_KEYS = frozenset({"model", "ema", "opt", "epoch", "train_steps", "args"})
# sd-vae-ft-ema latents, normalised with the authors' fixed per-channel constants
LATENT_MEAN, LATENT_STD = MPDIT_AUTHORS_MEAN, MPDIT_AUTHORS_STD
_BLOCK_PARTS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def recognises(state: Mapping[str, torch.Tensor]) -> bool:
    return "downsample_blocks.0.attn.qkv.weight" in state and "upsampler.proj.weight" in state


def architecture(state: Mapping[str, torch.Tensor], args: dict[str, Any] | None, path: str | Path,
                 num_heads: int | None, expect_cfg: ModelConfig | None) -> ModelConfig:
    for key in ("x_embedder.proj.weight", "x_embedder_skip.proj.weight", "pos_embed", "final_layer.linear.weight",
                "y_embedder.embedding_table.weight"):
        if key not in state:
            raise ImportRefused(path, f"an MPDiT checkpoint without {key!r} (the suite's MPDiT has two levels "
                                      "with the skip embedding)")
    width, channels, coarse = state["x_embedder.proj.weight"].shape[:3]
    fine = state["x_embedder_skip.proj.weight"].shape[2]
    side = grid_side(state["pos_embed"].shape[1], path, "pos_embed") * fine
    out_channels = state["final_layer.linear.weight"].shape[0] // (fine * fine)
    rows, table_width = state["y_embedder.embedding_table.weight"].shape
    fno = "t_embedder.fc0.weight" in state
    values = dict(
        depths=[indexed(state, "downsample_blocks."), indexed(state, "upsample_blocks.")],
        patch_sizes=[coarse, fine], hidden_size=width,
        num_heads=heads_for(width, num_heads, expect_cfg, path),
        mlp_ratio=state["downsample_blocks.0.mlp.fc1.weight"].shape[0] / width,
        upsample="linear", upsample_refine="linear", modulation="shared",
        class_tokens=table_width // width, num_classes=rows - 1, in_channels=channels,
        learn_sigma=out_channels == 2 * channels, input_size=side,
        time_embedder="fno" if fno else "mlp",
        time_embedder_layers=indexed(state, "t_embedder.conv") if fno else _mlp_layers(state),
        time_embed_scale=1.0, fno_init="authors")
    if args and args.get("latent_size") not in (None, side):
        raise ImportRefused(path, f"args.latent_size = {args['latent_size']} but the position table is for a "
                                  f"{side} x {side} latent")
    return ModelConfig.from_dict(values, source=f"{path} (MPDiT authors' checkpoint)")


def _mlp_layers(state: Mapping[str, torch.Tensor]) -> int:
    return sum(1 for k in state if k.startswith("t_embedder.mlp.") and k.endswith(".weight"))


def source_keys(cfg: ModelConfig) -> dict[str, str]:
    """Their key -> the suite's key, for every tensor of the model."""
    names = {"pos_embed_downsampled": "pos_embed.0", "pos_embed": "pos_embed.1",
             "y_embedder.embedding_table.weight": "class_embed.table.weight"}
    pairs = {"x_embedder.proj": "patch_embed.proj", "x_embedder_skip.proj": "skips.0.patch.proj",
             "linear_skip": "skips.0.proj", "time_modulation.1": "modulation.linear",
             "upsampler.proj": "upsamples.0.expand.linear", "upsampler.refine": "upsamples.0.refine.proj",
             "final_layer.linear": "final.linear"}
    if cfg.time_embedder == "fno":
        pairs.update({"t_embedder.fc0": "time_embed.lift", "t_embedder.fc1": "time_embed.out"})
        for i in range(cfg.time_embedder_layers):
            pairs[f"t_embedder.w{i}"] = f"time_embed.pointwise.{i}"
            names[f"t_embedder.conv{i}.weights_real"] = f"time_embed.spectral.{i}.weight_real"
            names[f"t_embedder.conv{i}.weights_imag"] = f"time_embed.spectral.{i}.weight_imag"
    else:
        for i in range(cfg.time_embedder_layers):
            pairs[f"t_embedder.mlp.{2 * i}"] = f"time_embed.mlp.{2 * i}"
    for level, theirs in enumerate(("downsample_blocks", "upsample_blocks")):
        for i in range(cfg.depths[level]):
            for part in _BLOCK_PARTS:
                pairs[f"{theirs}.{i}.{part}"] = f"levels.{level}.{i}.{part}"
    for theirs, ours in pairs.items():
        names[f"{theirs}.weight"], names[f"{theirs}.bias"] = f"{ours}.weight", f"{ours}.bias"
    return names


def rewrite(suite: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """Nothing to convert: their conventions are the suite's."""


def train_args(cfg: ModelConfig) -> dict[str, Any]:
    """What their train.py's args hold about the model (for files written in their format)."""
    return {"model": "MPDiT", "in_channels": cfg.in_channels, "num_classes": cfg.num_classes,
            "time_emb": cfg.time_embedder, "num_condition_tokens": cfg.class_tokens, "skip_connection": True,
            "resolution": cfg.input_size * 8, "vae_rate": 8, "latent_size": cfg.input_size}


def sample_defaults(args: dict[str, Any] | None) -> dict[str, Any]:
    return {}  # guidance on every channel: the suite's default


def latent_normalisation(cfg: ModelConfig) -> tuple[list[float], list[float]]:
    return LATENT_MEAN, LATENT_STD
