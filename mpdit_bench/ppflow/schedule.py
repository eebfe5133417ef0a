"""PPFlow: the patch size changes with sampling time instead of (or as well as) with depth.

A ``PatchSchedule`` cuts t into stages. Stage s holds ``b_s <= t < b_(s-1)`` (b_-1 = +inf, so t = 1 is in
stage 0) in the suite's convention t = 0 data, t = 1 noise. PPFlow's own code runs t = 0 noise to 1 data
and puts "t <= 0.5" in the coarse stage; with t_suite = 1 - t_ppflow that is t_suite >= 0.5 here.

``PatchScheduleDiT`` is a ``MultiPatchDiT`` whose first level's patch follows the schedule:

- one level (PPFlow): the whole backbone runs on the stage's tokens;
- several levels (MPDiT + PPFlow, our combination): the coarse path's patch follows the schedule, the fine
  path and its skip stay at the finest patch, and each stage has its own upsample block (its factor is
  the stage's coarse patch over the next level's patch).

The least noisy stage IS the base MultiPatchDiT (same module names, same state-dict keys), so a trained
isotropic or MPDiT checkpoint loads into it directly and conversion only has to fill the coarser stages'
own modules: ``stage_patchify`` (lossless space-to-depth, then a conv at the base patch with 2x or 4x the
input channels), ``stage_pos_embed`` (fixed sin-cos on the base grid's coordinates, stride = the merge
factor along merged axes), ``stage_finals`` (one level) or ``stage_upsamples`` (several levels), and a
learned ``level_embed`` (zero-initialised) added to the conditioning: c = t + y + level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mpdit_bench.components.upsample import build_upsample
from mpdit_bench.config import ModelConfig, parse_patch_shape, patch_shape_name
from mpdit_bench.models.blocks import FinalLayer
from mpdit_bench.models.embeddings import PatchEmbed, frozen_pos_embed
from mpdit_bench.models.multipatch import MultiPatchDiT


@dataclass(frozen=True)
class PatchSchedule:
    """Stages coarse (noisy) first: a (rows, cols) patch each, and the t boundaries between them."""

    shapes: tuple[tuple[int, int], ...]
    boundaries: tuple[float, ...]
    base: int  # the patch the shapes are built from (the first level's patch in patch_sizes)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "PatchSchedule":
        if not cfg.time_patch_sizes:
            raise ValueError("config has no patch schedule (time_patch_sizes is empty)")
        shapes = tuple(parse_patch_shape(s) for s in cfg.time_patch_sizes)
        return cls(shapes, tuple(cfg.time_boundaries), cfg.patch_sizes[0])

    @property
    def num_stages(self) -> int:
        return len(self.shapes)

    @property
    def fine_stage(self) -> int:
        return self.num_stages - 1

    def name(self, stage: int) -> str:
        return patch_shape_name(self.shapes[stage])

    def merge(self, stage: int) -> tuple[int, int]:
        """Space-to-depth factors (rows, cols) from the base patch to this stage's patch."""
        rows, cols = self.shapes[stage]
        return rows // self.base, cols // self.base

    def time_range(self, stage: int) -> tuple[float, float]:
        """[lo, hi) in suite t; the coarsest stage also holds t = 1."""
        edges = (1.0, *self.boundaries, 0.0)
        return edges[stage + 1], edges[stage]

    def fractions(self) -> tuple[float, ...]:
        """Share of a trajectory spent in each stage when sampling steps are uniform in t."""
        return tuple(hi - lo for lo, hi in map(self.time_range, range(self.num_stages)))

    def evaluation_fractions(self, times) -> tuple[float, ...]:
        """Share of network evaluations in each stage for a sampler that evaluates at ``times`` (e.g. a Heun
        grid: both evaluations of every step); pass it to ``PatchScheduleDiT.expected_flops``."""
        counts = torch.bincount(self.stage_of(torch.as_tensor(times, dtype=torch.float64)),
                                minlength=self.num_stages)
        return tuple((counts.double() / counts.sum()).tolist())

    def stage_of(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) t -> (B,) long stage index: the number of boundaries strictly above t."""
        bounds = torch.tensor(self.boundaries, dtype=torch.float64, device=t.device)
        return (t.double()[:, None] < bounds[None]).sum(dim=1)


class SpaceToDepthPatchEmbed(nn.Module):
    """PPFlow's large patch: a lossless space-to-depth by (fh, fw), then PatchEmbed at the base patch p
    over C * fh * fw channels. Tokens cover contiguous (p fh) x (p fw) pixel blocks, row-major."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, merge: tuple[int, int]):
        super().__init__()
        self.merge = merge
        self.embed = PatchEmbed(in_channels * merge[0] * merge[1], dim, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(space_to_depth(x, *self.merge))  # (B, C, H, W) -> (B, H W / (p^2 fh fw), D)

    def flops(self, tokens: int) -> int:
        return self.embed.flops(tokens)


def space_to_depth(x: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C fh fw, H/fh, W/fw); channel c * fh * fw + i * fw + j holds the (i, j) sub-pixel
    (for fh = fw this is F.pixel_unshuffle)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // fh, fh, W // fw, fw).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(B, C * fh * fw, H // fh, W // fw)


def depth_to_space(x: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
    """Inverse of space_to_depth: (B, C fh fw, h, w) -> (B, C, h fh, w fw)."""
    B, Ck, h, w = x.shape
    x = x.reshape(B, Ck // (fh * fw), fh, fw, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(B, Ck // (fh * fw), h * fh, w * fw)


def unpatchify(x: torch.Tensor, p: int, channels: int, gh: int, gw: int) -> torch.Tensor:
    """(B, gh gw, p p C) -> (B, C, gh p, gw p), the layout of MultiPatchDiT.unpatchify on any grid."""
    x = x.reshape(x.shape[0], gh, gw, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], channels, gh * p, gw * p)


class PatchScheduleDiT(MultiPatchDiT):
    """forward(x, t, y[, attn_mask, stage]) -> (B, C_out, H, W); the stage comes from t unless given.

    A batch whose samples fall in several stages is split by stage: one sub-forward per stage, results put
    back in the input order (an attention mask is refused then, its length depends on the stage). Training
    that draws t with ``ppflow.sample_stage_times`` gets contiguous groups, one per stage."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.schedule = sched = PatchSchedule.from_config(cfg)
        D, C, p = cfg.hidden_size, cfg.in_channels, sched.base
        coarse = range(sched.num_stages - 1)  # the last stage uses the base model's modules
        self.stage_patchify = nn.ModuleList(SpaceToDepthPatchEmbed(C, D, p, sched.merge(s)) for s in coarse)
        self.stage_pos_embed = nn.ParameterList(
            frozen_pos_embed(D, self.stage_grid(s)[0], grid_w=self.stage_grid(s)[1], stride=sched.merge(s))
            for s in coarse)
        single = cfg.num_levels == 1
        self.stage_finals = nn.ModuleList(
            FinalLayer(D, p, cfg.out_channels * sched.merge(s)[0] * sched.merge(s)[1])
            for s in (coarse if single else ()))
        self.stage_upsamples = nn.ModuleList(
            build_upsample(cfg, sched.shapes[s][0] // cfg.patch_sizes[1])
            for s in (() if single else coarse))
        self.level_embed = nn.Embedding(sched.num_stages, D)
        self.init_weights()

    def init_weights(self) -> None:
        super().init_weights()
        for final in getattr(self, "stage_finals", ()):  # zero output, as DiT's final layer
            nn.init.zeros_(final.linear.weight)
            nn.init.zeros_(final.linear.bias)
        if hasattr(self, "level_embed"):  # zero: a converted model starts as the source model
            nn.init.zeros_(self.level_embed.weight)

    # ---- geometry ------------------------------------------------------------------------------------
    def stage_grid(self, stage: int) -> tuple[int, int]:
        """First level's token grid (rows, cols) at ``stage``."""
        rows, cols = self.schedule.shapes[stage]
        return self.cfg.input_size // rows, self.cfg.input_size // cols

    def stage_tokens(self, stage: int) -> int:
        """Image tokens the first level's blocks see at ``stage``."""
        gh, gw = self.stage_grid(stage)
        return gh * gw

    # ---- forward pieces (also used by ppflow.forward_packed) -----------------------------------------
    def conditioning(self, t: torch.Tensor, y: torch.Tensor, stage: int | torch.Tensor):
        """-> (per-block modulation list, final (B, 2, D), class tokens (B, m, D) or None).

        ``stage``: one stage for the batch, or a (B,) tensor of stages (packed mixed batches)."""
        vec, cls = self.class_embed(y)
        c = self.time_embed(t) + self.level_embed.weight[stage]
        if vec is not None:
            c = c + vec
        block_mods, final_mod = self.modulation(c)
        return block_mods, final_mod, cls

    def embed(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """(B, C, H, W) -> (B, L_stage, D) first-level tokens with their position embedding."""
        if stage == self.schedule.fine_stage:
            return self.patch_embed(x) + self.pos_embed[0]
        return self.stage_patchify[stage](x) + self.stage_pos_embed[stage]

    def head(self, img: torch.Tensor, final_mod: torch.Tensor, stage: int) -> torch.Tensor:
        """(B, L, D) last-level tokens -> (B, C_out, H, W)."""
        shift, scale = final_mod[:, 0], final_mod[:, 1]
        if self.cfg.num_levels > 1 or stage == self.schedule.fine_stage:
            return self.unpatchify(self.final(img, shift, scale))
        fh, fw = self.schedule.merge(stage)
        gh, gw = self.stage_grid(stage)
        out = self.stage_finals[stage](img, shift, scale)  # (B, L, p*p*C*fh*fw)
        out = unpatchify(out, self.schedule.base, self.cfg.out_channels * fh * fw, gh, gw)
        return depth_to_space(out, fh, fw)

    def upsample(self, level: int, stage: int):
        """The upsample block into ``level`` (>= 1) and the grid it starts from."""
        if level == 1:
            block = self.upsamples[0] if stage == self.schedule.fine_stage else self.stage_upsamples[stage]
            return block, self.stage_grid(stage)
        grid = self.cfg.grid(level - 1)
        return self.upsamples[level - 1], (grid, grid)

    def forward_stage(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, stage: int,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        block_mods, final_mod, cls = self.conditioning(t, y, stage)
        m = self.num_class_tokens
        img = self.embed(x, stage)
        block_index = 0
        for level, blocks in enumerate(self.levels):
            if level > 0:
                block, (gh, gw) = self.upsample(level, stage)
                img, cls = block(img, cls, gh, gw)  # (B, L, D) -> (B, f^2 L, D)
                img = img + self.skips[level - 1](x) + self.pos_embed[level]
            h = img if cls is None else torch.cat([cls, img], dim=1)
            for blk in blocks:
                h = blk(h, block_mods[block_index], attn_mask)
                block_index += 1
            cls, img = (h[:, :m], h[:, m:]) if m else (None, h)
        return self.head(img, final_mod, stage)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                attn_mask: torch.Tensor | None = None, stage: int | None = None) -> torch.Tensor:
        if stage is not None:
            return self.forward_stage(x, t, y, stage, attn_mask)
        stages = self.schedule.stage_of(t)
        present = stages.unique().tolist()
        if len(present) == 1:
            return self.forward_stage(x, t, y, present[0], attn_mask)
        if attn_mask is not None:
            raise ValueError(f"a batch spanning stages {present} cannot take one attn_mask; "
                             "call forward once per stage (stage=...)")
        out = None
        for s in present:
            idx = (stages == s).nonzero().squeeze(1)
            part = self.forward_stage(x[idx], t[idx], y[idx], s)
            if out is None:
                out = part.new_empty((x.shape[0], *part.shape[1:]))
            out[idx] = part
        return out

    # ---- counting ----------------------------------------------------------------------------------------
    def flops(self, stage: int | None = None) -> int:
        """Analytic FLOPs of one forward pass at ``stage`` (default: the finest, = the base model's)."""
        stage = self.schedule.fine_stage if stage is None else stage
        if stage == self.schedule.fine_stage:
            return super().flops()
        cfg, m = self.cfg, self.num_class_tokens
        tokens = self.stage_tokens(stage)
        total = (self.time_embed.flops() + self.class_embed.flops() + self.modulation.flops()
                 + self.stage_patchify[stage].flops(tokens))
        for level, blocks in enumerate(self.levels):
            if level > 0:
                block, (gh, gw) = self.upsample(level, stage)
                tokens = cfg.grid(level) ** 2
                total += block.flops(gh, gw, m) + self.skips[level - 1].flops(tokens)
            total += sum(blk.flops(tokens + m) for blk in blocks)
        if cfg.num_levels > 1:
            return total + self.final.flops(cfg.grid(-1) ** 2)
        return total + self.stage_finals[stage].flops(tokens)

    def expected_flops(self, fractions: tuple[float, ...] | None = None) -> float:
        """FLOPs per network evaluation averaged over a trajectory: sum_s fraction_s x flops(s)."""
        fractions = self.schedule.fractions() if fractions is None else fractions
        return sum(f * self.flops(s) for s, f in enumerate(fractions))


__all__ = ["PatchSchedule", "PatchScheduleDiT", "SpaceToDepthPatchEmbed", "space_to_depth", "depth_to_space",
           "unpatchify"]
