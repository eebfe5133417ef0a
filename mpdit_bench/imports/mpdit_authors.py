"""The MPDiT authors' format: train.py's {model, ema, opt, epoch, train_steps, args} (sample.py reads "ema").

Their two networks are the suite's MultiPatchDiT with shared modulation, class tokens and a skip embedding
into every finer level, in the suite's own conventions (t = 0 data, velocity noise - data) with raw t into
the time embedder: the weights are renamed, nothing is rewritten.

- ``MPDiT``: two levels, patches (p, 2), one upsample by p / 2;
- ``MPDiTv2``: three levels. Its position tables are sized for latent / 8, / 4 and / 2 and both upsamples
  double the grid whatever its ``patch_sizes`` argument says, so the network runs only with patches (8, 4, 2).

Both name their levels differently (``Layout``); everything else (time and class embedders, the shared
modulation, the blocks, the upsample's expand + refine, the final layer) is the same module in both.
Their train.py builds the network from a name in their model table (``args.model``) plus ``latent_size``,
``in_channels``, ``num_classes``, ``num_condition_tokens``, ``time_emb`` and ``skip_connection``; depths,
patches and width come from the name, so the import reads them from the tensors and checks them against
the name when it is one of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench.data.latents import MPDIT_AUTHORS_MEAN, MPDIT_AUTHORS_STD
from mpdit_bench.imports.common import ImportRefused, grid_side, heads_for, indexed

NAME = "mpdit"
FAMILY = "MPDiT"  # preset names of this source: MPDiT-* (two levels), MPDiTv2-* (three)
TRAIN_KEYS = frozenset({"model", "ema", "opt", "epoch", "train_steps", "args"})
# sd-vae-ft-ema latents, normalised with the authors' fixed per-channel constants
LATENT_MEAN, LATENT_STD = MPDIT_AUTHORS_MEAN, MPDIT_AUTHORS_STD
_BLOCK_PARTS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass(frozen=True)
class Layout:
    """Their attribute names for one network class, level by level, coarse first."""

    network: str  # their class
    embedders: tuple[str, ...]  # the first level's patch embedding, then each finer level's skip embedding
    skip_linears: tuple[str, ...]  # the Linear after each skip embedding (levels 1, 2, ...)
    pos_tables: tuple[str, ...]
    blocks: tuple[str, ...]
    upsamplers: tuple[str, ...]  # into levels 1, 2, ...
    patch_sizes: tuple[int, ...] | None  # the only patches the network runs with (None: any (p, 2), p even)
    patch_rule: str = ""  # why


TWO_LEVELS = Layout("MPDiT", embedders=("x_embedder", "x_embedder_skip"), skip_linears=("linear_skip",),
                    pos_tables=("pos_embed_downsampled", "pos_embed"), blocks=("downsample_blocks", "upsample_blocks"),
                    upsamplers=("upsampler",), patch_sizes=None)
THREE_LEVELS = Layout("MPDiTv2", embedders=("x_embedder", "x_embedder_lvl1", "x_embedder_lvl2"),
                      skip_linears=("linear_skip_lvl1", "linear_skip_lvl2"),
                      pos_tables=("pos_embed", "pos_embed_lvl1", "pos_embed_lvl2"),
                      blocks=("downsample_blocks", "upsample_blocks_lvl1", "upsample_blocks_lvl2"),
                      upsamplers=("upsampler_lvl1", "upsampler_lvl2"), patch_sizes=(8, 4, 2),
                      patch_rule="position tables for latent / 8, / 4, / 2, each upsample doubling the grid, "
                                 "2 x 2 output patches")
LAYOUTS = {2: TWO_LEVELS, 3: THREE_LEVELS}

# Their model table (models/mpdit.py, MPDiT_models): name -> (depths, patch sizes, width, heads)
THEIR_MODELS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, int]] = {
    "MPDiT-XL/4x": ((22, 6), (4, 2), 1152, 16), "MPDiT-L/4x": ((18, 6), (4, 2), 1024, 16),
    "MPDiT-B/4x": ((6, 6), (4, 2), 768, 12),
    "MPDiTv2-XL": ((14, 8, 6), (8, 4, 2), 1152, 16), "MPDiTv2-L": ((14, 6, 4), (8, 4, 2), 1024, 16),
    "MPDiTv2-B": ((6, 4, 2), (8, 4, 2), 768, 12),
}


def their_model(args: dict[str, Any] | None) -> tuple[tuple[int, ...], tuple[int, ...], int, int] | None:
    """(depths, patch sizes, width, heads) of the entry of their model table that ``args.model`` names."""
    name = (args or {}).get("model")
    return THEIR_MODELS.get(name) if isinstance(name, str) else None


def layout_of(state: Mapping[str, torch.Tensor]) -> Layout:
    return THREE_LEVELS if f"{THREE_LEVELS.upsamplers[0]}.proj.weight" in state else TWO_LEVELS


def recognises(state: Mapping[str, torch.Tensor]) -> bool:
    return "downsample_blocks.0.attn.qkv.weight" in state and any(
        f"{layout.upsamplers[0]}.proj.weight" in state for layout in LAYOUTS.values())


def architecture(state: Mapping[str, torch.Tensor], args: dict[str, Any] | None, path: str | Path,
                 num_heads: int | None, expect_cfg: ModelConfig | None) -> ModelConfig:
    layout = layout_of(state)
    _require_modules(state, layout, path)
    width, channels = state["x_embedder.proj.weight"].shape[:2]
    patches = tuple(state[f"{name}.proj.weight"].shape[2] for name in layout.embedders)
    if layout.patch_sizes is not None and patches != layout.patch_sizes:
        raise ImportRefused(path, f"{layout.network} embeds its levels with patches {list(patches)}; their network "
                                  f"runs only with {list(layout.patch_sizes)} ({layout.patch_rule})")
    depths = [indexed(state, f"{name}.") for name in layout.blocks]
    if 0 in depths:
        empty = [name for name, depth in zip(layout.blocks, depths) if depth == 0]
        raise ImportRefused(path, f"no blocks in {empty} (depths {depths}); the suite's levels hold at least one "
                                  "block each")
    fine_table = layout.pos_tables[-1]
    side = grid_side(state[fine_table].shape[1], path, fine_table) * patches[-1]
    out_channels = state["final_layer.linear.weight"].shape[0] // (patches[-1] ** 2)
    rows, table_width = state["y_embedder.embedding_table.weight"].shape
    if table_width == 0 or table_width % width:
        raise ImportRefused(path, f"the class table is {table_width} wide, not a positive multiple of the width "
                                  f"{width} (their num_condition_tokens >= 1 tokens of that width)")
    fno = "t_embedder.fc0.weight" in state
    values = dict(
        depths=depths, patch_sizes=list(patches), hidden_size=width,
        num_heads=heads_for(width, num_heads, expect_cfg, path),
        mlp_ratio=state["downsample_blocks.0.mlp.fc1.weight"].shape[0] / width,
        upsample="linear", upsample_refine="linear", modulation="shared",
        class_tokens=table_width // width, num_classes=rows - 1, in_channels=channels,
        learn_sigma=out_channels == 2 * channels, input_size=side,
        time_embedder="fno" if fno else "mlp",
        time_embedder_layers=indexed(state, "t_embedder.conv") if fno else _mlp_layers(state),
        time_embed_scale=1.0, fno_init="authors")
    _check_args(args, values, layout, path)
    return ModelConfig.from_dict(values, source=f"{path} (MPDiT authors' {layout.network} checkpoint)")


def _require_modules(state: Mapping[str, torch.Tensor], layout: Layout, path: str | Path) -> None:
    needed = [f"{name}.proj.weight" for name in layout.embedders] + [f"{name}.weight" for name in layout.skip_linears]
    needed += [*layout.pos_tables, "final_layer.linear.weight", "y_embedder.embedding_table.weight"]
    missing = [key for key in needed if key not in state]
    if missing:
        raise ImportRefused(path, f"an MPDiT authors' {layout.network} checkpoint without {missing} (the suite's "
                                  "MPDiT has a skip embedding into every finer level: their skip_connection=True)")


def _check_args(args: dict[str, Any] | None, values: dict[str, Any], layout: Layout, path: str | Path) -> None:
    """Refuse a file whose train.py arguments name another network than its tensors hold."""
    if not args:
        return
    if args.get("latent_size") not in (None, values["input_size"]):
        raise ImportRefused(path, f"args.latent_size = {args['latent_size']} but the position tables are for a "
                                  f"{values['input_size']} x {values['input_size']} latent")
    for arg, key in (("num_condition_tokens", "class_tokens"), ("num_classes", "num_classes"),
                     ("in_channels", "in_channels"), ("time_emb", "time_embedder")):
        if arg in args and args[arg] != values[key]:
            raise ImportRefused(path, f"args.{arg} = {args[arg]!r} but the tensors hold {key} = {values[key]!r}")
    known = their_model(args)
    if known is None:
        return
    read = (tuple(values["depths"]), tuple(values["patch_sizes"]), values["hidden_size"], values["num_heads"])
    if read != known:
        fields = ("depths", "patch_sizes", "hidden_size", "num_heads")
        raise ImportRefused(path, f"args.model = {args['model']!r} is their {dict(zip(fields, map(_listed, known)))}"
                                  f" but the tensors hold {dict(zip(fields, map(_listed, read)))} "
                                  f"({layout.network} layout)")


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _mlp_layers(state: Mapping[str, torch.Tensor]) -> int:
    return sum(1 for k in state if k.startswith("t_embedder.mlp.") and k.endswith(".weight"))


def source_keys(cfg: ModelConfig) -> dict[str, str]:
    """Their key -> the suite's key, for every tensor of the model."""
    if cfg.num_levels not in LAYOUTS:
        raise ValueError(f"the MPDiT authors' networks have {sorted(LAYOUTS)} levels, not {cfg.num_levels}")
    layout = LAYOUTS[cfg.num_levels]
    names = {"y_embedder.embedding_table.weight": "class_embed.table.weight"}
    names.update({table: f"pos_embed.{level}" for level, table in enumerate(layout.pos_tables)})
    pairs = {"x_embedder.proj": "patch_embed.proj", "time_modulation.1": "modulation.linear",
             "final_layer.linear": "final.linear"}
    for i, (embedder, linear, upsampler) in enumerate(zip(layout.embedders[1:], layout.skip_linears,
                                                          layout.upsamplers)):
        pairs.update({f"{embedder}.proj": f"skips.{i}.patch.proj", linear: f"skips.{i}.proj",
                      f"{upsampler}.proj": f"upsamples.{i}.expand.linear",
                      f"{upsampler}.refine": f"upsamples.{i}.refine.proj"})
    if cfg.time_embedder == "fno":
        pairs.update({"t_embedder.fc0": "time_embed.lift", "t_embedder.fc1": "time_embed.out"})
        for i in range(cfg.time_embedder_layers):
            pairs[f"t_embedder.w{i}"] = f"time_embed.pointwise.{i}"
            names[f"t_embedder.conv{i}.weights_real"] = f"time_embed.spectral.{i}.weight_real"
            names[f"t_embedder.conv{i}.weights_imag"] = f"time_embed.spectral.{i}.weight_imag"
    else:
        for i in range(cfg.time_embedder_layers):
            pairs[f"t_embedder.mlp.{2 * i}"] = f"time_embed.mlp.{2 * i}"
    for level, theirs in enumerate(layout.blocks):
        for i in range(cfg.depths[level]):
            for part in _BLOCK_PARTS:
                pairs[f"{theirs}.{i}.{part}"] = f"levels.{level}.{i}.{part}"
    for theirs, ours in pairs.items():
        names[f"{theirs}.weight"], names[f"{theirs}.bias"] = f"{ours}.weight", f"{ours}.bias"
    return names


def rewrite(suite: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """Nothing to convert: their conventions are the suite's."""


def their_model_name(cfg: ModelConfig) -> str:
    """The name in their model table with this network, else their class name."""
    have = (tuple(cfg.depths), tuple(cfg.patch_sizes), cfg.hidden_size, cfg.num_heads)
    named = [name for name, shape in THEIR_MODELS.items() if shape == have]
    return named[0] if named else LAYOUTS.get(cfg.num_levels, TWO_LEVELS).network


def train_args(cfg: ModelConfig) -> dict[str, Any]:
    """What their train.py's args hold about the model (for files written in their format)."""
    return {"model": their_model_name(cfg), "in_channels": cfg.in_channels, "num_classes": cfg.num_classes,
            "time_emb": cfg.time_embedder, "num_condition_tokens": cfg.class_tokens, "skip_connection": True,
            "resolution": cfg.input_size * 8, "vae_rate": 8, "latent_size": cfg.input_size}


def sample_defaults(args: dict[str, Any] | None) -> dict[str, Any]:
    return {}  # guidance on every channel: the suite's default


def latent_normalisation(cfg: ModelConfig) -> tuple[list[float], list[float]]:
    return LATENT_MEAN, LATENT_STD
