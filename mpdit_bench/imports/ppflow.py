"""PPFlow's formats: the released PPF-XL-2.pt / PPF-XL-3.pt (bare state dicts of EMA weights) and train.py's
{model, ema, opt, args}.

PPFlow is SiT with a patch schedule over time: a space-to-depth embedding (``x_embedder.proj1``...) and an
output Linear (``final_layer.linear1``...) per coarse stage, a position table per stage (``pos_embed.s``) and a
level embedding added to the conditioning. Its stages, in its t (0 noise), are t <= 0.5 coarse, then
(3 levels) 0.5 < t <= 0.75, then the base patch; in the suite's t = 1 - t that is the schedule of
``ppflow.schedule.default_schedule`` (boundaries [0.5] or [0.5, 0.25], coarse side inclusive). The
conventions are SiT's and are converted the same way. Coarse stage s's modules are matched by their
shapes (stage s's space-to-depth factor), so a file whose names follow another order is refused, not
mis-assigned; the level embedding's row s is stage s (coarse first), as PPFlow indexes its stage guidance.

The coarse stages' layouts are the suite's own, so their tensors are renamed, not permuted: the
space-to-depth puts sub-pixel (i, j) of channel c in channel c fh fw + i fw + j (the 3-level "4x2" stage,
the suite's 2x4: c 2 + j, a token grid of H/p rows by W/2p columns); an output row is (p, q, c') with c'
over out_channels x fh fw in that order, so PPFlow's split of the learned sigma before its inverse
space-to-depth keeps the same velocity rows as the suite's split after it; the position tables place
tokens on the fine grid (columns in the first half of the channels), as the suite builds them.

Checked against PPFlow's own code: the two-level fixture's outputs directly (tests/test_imports.py); three
levels through an independent reference forward (tests/ppflow_reference.py) that reproduces those
outputs and agrees with an imported random three-level file in every stage, plain and guided
(tests/test_ppflow_reference.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench.imports import sit
from mpdit_bench.imports.common import ImportRefused
from mpdit_bench.ppflow.schedule import PatchSchedule, default_schedule

NAME = "ppflow"
FAMILY = "PPF-"  # preset names of this source
TRAIN_KEYS = sit.TRAIN_KEYS
GUIDED_CHANNELS = sit.GUIDED_CHANNELS


def recognises(state: Mapping[str, torch.Tensor]) -> bool:
    return "level_embedder.embedding_table.weight" in state and "blocks.0.adaLN_modulation.1.weight" in state


def architecture(state: Mapping[str, torch.Tensor], args: dict[str, Any] | None, path: str | Path,
                 num_heads: int | None, expect_cfg: ModelConfig | None) -> ModelConfig:
    levels = state["level_embedder.embedding_table.weight"].shape[0]
    if levels not in (2, 3):
        raise ImportRefused(path, f"the level embedding has {levels} rows; PPFlow has 2 or 3 levels")
    if args and args.get("patch_level") not in (None, levels):
        raise ImportRefused(path, f"args.patch_level = {args['patch_level']} but the level embedding has "
                                  f"{levels} rows")
    fine_pos = f"pos_embed.{levels - 1}"
    values = sit.backbone(state, args, path, num_heads, expect_cfg, fine_pos)
    shapes, bounds = default_schedule(levels, values["patch_sizes"][0])
    values.update(time_patch_sizes=shapes, time_boundaries=bounds)
    return ModelConfig.from_dict(values, source=f"{path} (PPFlow checkpoint)")


def source_keys(cfg: ModelConfig) -> dict[str, str]:
    sched = PatchSchedule.from_config(cfg)
    names = {f"pos_embed.{sched.fine_stage}": "pos_embed.0",
             "level_embedder.embedding_table.weight": "level_embed.weight", **sit.backbone_keys(cfg)}
    for s in range(sched.num_stages - 1):
        names[f"pos_embed.{s}"] = f"stage_pos_embed.{s}"
        for part in ("weight", "bias"):
            names[f"x_embedder.proj{s + 1}.{part}"] = f"stage_patchify.{s}.embed.proj.{part}"
            names[f"final_layer.linear{s + 1}.{part}"] = f"stage_finals.{s}.linear.{part}"
    return names


def rewrite(suite: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    sched = PatchSchedule.from_config(cfg)
    finals = {"final.linear": 1}
    for s in range(sched.num_stages - 1):
        fh, fw = sched.merge(s)
        finals[f"stage_finals.{s}.linear"] = fh * fw
    sit.to_noise_at_one(suite, cfg, finals)


def train_args(cfg: ModelConfig) -> dict[str, Any]:
    """What their train.py's args hold about the model (for files written in their format)."""
    stages = len(cfg.time_patch_sizes)
    return {**sit.train_args(cfg), "model": "PPFlow", "patch_level": stages, "cfg_scales": [1.0] * stages}


def sample_defaults(args: dict[str, Any] | None) -> dict[str, Any]:
    """sample_ddp.py's ODE defaults: torchdiffeq's heun2 over 250 points, 3 guided channels, its scales."""
    defaults: dict[str, Any] = {"cfg_channels": GUIDED_CHANNELS, "sampler": "heun2", "grid": "points", "steps": 250}
    scales = (args or {}).get("cfg_scales")
    if isinstance(scales, list) and scales and all(isinstance(w, (int, float)) for w in scales):
        defaults["cfg_scale"] = [float(w) for w in scales]  # one per stage, coarse first, as the suite's
    return defaults


def latent_normalisation(cfg: ModelConfig) -> tuple[list[float], list[float]]:
    return sit.latent_normalisation(cfg)
