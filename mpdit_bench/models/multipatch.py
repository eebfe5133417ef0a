"""The multi-patch diffusion transformer: levels of DiT blocks, coarse to fine, joined by upsample blocks.

One level is the isotropic DiT/SiT. Two levels (4, 2) with depths (N-k, k) is MPDiT: the first N-k
blocks see large patches, an upsample block moves the sequence to the fine grid, a skip embeds the
input at the fine patch size, and the last k blocks refine. Any strictly decreasing list of patch
sizes works, e.g. (8, 4, 2).

A patch schedule over sampling time (PPFlow, ``time_patch_sizes``) is a per-stage choice of three pieces
inside the same forward: the first level's embedding, the upsample out of the first level (several
levels) and the output head (one level). The least noisy stage uses the base modules (same names, same
state-dict keys), so an isotropic or MPDiT checkpoint loads into a schedule model as its finest stage;
the coarser stages add ``stage_patchify``, ``stage_pos_embed``, ``stage_finals`` or ``stage_upsamples``
and a ``level_embed`` added to the conditioning (c = t + level + y), zero or N(0, 0.02) (``level_embed_init``).
"""

from __future__ import annotations

import torch
from torch import nn

from mpdit_bench import registry
from mpdit_bench.components.upsample import build_upsample
from mpdit_bench.config import ModelConfig
from mpdit_bench.models.blocks import FinalLayer, TransformerBlock, init_linear_xavier
from mpdit_bench.components.embeddings import PatchEmbed, SkipEmbed, frozen_pos_embed, unpatchify
from mpdit_bench.ppflow.modules import SpaceToDepthPatchEmbed, depth_to_space, init_level_embed
from mpdit_bench.ppflow.schedule import PatchSchedule


class MultiPatchDiT(nn.Module):
    """forward(x (B, C, H, W) latents, t (B,) in [0, 1] with 0 = data, y (B,) labels; C = null
    [, attn_mask, stage]) -> (B, C_out, H, W). The stage comes from t unless given; a batch whose samples
    fall in several stages runs one sub-forward per stage, results back in the input order."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, patches, m = cfg.hidden_size, cfg.patch_sizes, cfg.class_tokens
        self.num_class_tokens = m
        self.schedule = PatchSchedule.from_config(cfg) if cfg.time_patch_sizes else None
        self.fine_stage = self.schedule.fine_stage if self.schedule else 0

        self.time_embed = registry.create("time_embedder", cfg.time_embedder, hidden_size=D,
                                          num_layers=cfg.time_embedder_layers, time_scale=cfg.time_embed_scale,
                                          spectral_init=cfg.fno_init)
        self.class_embed = registry.create("class_embedder", "tokens" if m else "label",
                                           num_classes=cfg.num_classes, hidden_size=D, num_tokens=m)
        self.modulation = registry.create("modulation", cfg.modulation, hidden_size=D, depth=cfg.depth)

        self.patch_embed = PatchEmbed(cfg.in_channels, D, patches[0])
        self.skips = nn.ModuleList(SkipEmbed(cfg.in_channels, D, p) for p in patches[1:])
        self.upsamples = nn.ModuleList(self._upsample(coarse, fine) for coarse, fine in zip(patches, patches[1:]))
        self.pos_embed = nn.ParameterList(frozen_pos_embed(D, cfg.grid(i)) for i in range(len(patches)))
        self.levels = nn.ModuleList(
            nn.ModuleList(TransformerBlock(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(depth))
            for depth in cfg.depths)
        self.final = FinalLayer(D, patches[-1], cfg.out_channels)
        self.level_embed = None
        if self.schedule is not None:
            self._add_coarse_stages()
        self.init_weights()

    def _upsample(self, coarse: int, fine: int) -> nn.Module:
        return build_upsample(self.cfg, coarse // fine)

    def _add_coarse_stages(self) -> None:
        """PPFlow's per-stage modules for every stage but the finest (which is the base model)."""
        cfg, sched = self.cfg, self.schedule
        D, C, p = cfg.hidden_size, cfg.in_channels, sched.base
        coarse = range(sched.num_stages - 1)
        self.stage_patchify = nn.ModuleList(SpaceToDepthPatchEmbed(C, D, p, sched.merge(s)) for s in coarse)
        self.stage_pos_embed = nn.ParameterList(
            frozen_pos_embed(D, self.stage_grid(s)[0], grid_w=self.stage_grid(s)[1], stride=sched.merge(s))
            for s in coarse)
        single = cfg.num_levels == 1
        self.stage_finals = nn.ModuleList(
            FinalLayer(D, p, cfg.out_channels * sched.merge(s)[0] * sched.merge(s)[1]) for s in (coarse if single else ()))
        self.stage_upsamples = nn.ModuleList(
            self._upsample(sched.shapes[s][0], cfg.patch_sizes[1]) for s in (() if single else coarse))
        self.level_embed = nn.Embedding(sched.num_stages, D)

    def init_weights(self) -> None:
        init_linear_xavier(self)
        for module in self.modules():  # component-specific init (zero modulation/final, N(0, .02) tables)
            if module is not self and hasattr(module, "init_weights"):
                module.init_weights()
        for final in [self.final, *getattr(self, "stage_finals", ())]:  # zero output, as DiT's final layer
            nn.init.zeros_(final.linear.weight)
            nn.init.zeros_(final.linear.bias)
        if self.level_embed is not None:
            init_level_embed(self.level_embed.weight, self.cfg.level_embed_init)

    # ---- geometry: the first level's grid at a stage ----------------------------------------------------
    def stage_grid(self, stage: int) -> tuple[int, int]:
        """First level's token grid (rows, cols) at ``stage``."""
        if self.schedule is None:
            return self.cfg.grid(0), self.cfg.grid(0)
        rows, cols = self.schedule.shapes[stage]
        return self.cfg.input_size // rows, self.cfg.input_size // cols

    def stage_tokens(self, stage: int) -> int:
        """Image tokens the first level's blocks see at ``stage``."""
        gh, gw = self.stage_grid(stage)
        return gh * gw

    # ---- the per-stage pieces (also used by ppflow.packing) -------------------------------------------
    def conditioning(self, t: torch.Tensor, y: torch.Tensor, stage: int | torch.Tensor):
        """-> (per-block modulation list, final (B, 2, D), class tokens (B, m, D) or None).

        ``stage``: one stage for the batch, or a (B,) tensor of stages (packed mixed batches)."""
        vec, cls = self.class_embed(y)  # (B, D) or None, (B, m, D) or None
        c = self.time_embed(t)
        if self.level_embed is not None:
            c = c + self.level_embed.weight[stage]
        if vec is not None:
            c = c + vec
        block_mods, final_mod = self.modulation(c)
        return block_mods, final_mod, cls

    def embedder(self, stage: int) -> nn.Module:
        return self.patch_embed if stage == self.fine_stage else self.stage_patchify[stage]

    def embed(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """(B, C, H, W) -> (B, L_stage, D) first-level tokens with their position embedding."""
        pos = self.pos_embed[0] if stage == self.fine_stage else self.stage_pos_embed[stage]
        return self.embedder(stage)(x) + pos

    def upsample(self, level: int, stage: int) -> tuple[nn.Module, tuple[int, int]]:
        """The upsample block into ``level`` (>= 1) and the grid (rows, cols) it starts from."""
        if level == 1:
            block = self.upsamples[0] if stage == self.fine_stage else self.stage_upsamples[stage]
            return block, self.stage_grid(stage)
        grid = self.cfg.grid(level - 1)
        return self.upsamples[level - 1], (grid, grid)

    def head_layer(self, stage: int) -> FinalLayer:
        coarse_single = self.cfg.num_levels == 1 and stage != self.fine_stage
        return self.stage_finals[stage] if coarse_single else self.final

    def head(self, img: torch.Tensor, final_mod: torch.Tensor, stage: int) -> torch.Tensor:
        """(B, L, D) last-level tokens -> (B, C_out, H, W)."""
        out = self.head_layer(stage)(img, final_mod[:, 0], final_mod[:, 1])  # (B, L, p*p*C)
        if self.cfg.num_levels > 1 or stage == self.fine_stage:
            g = self.cfg.grid(-1)
            return unpatchify(out, self.cfg.patch_sizes[-1], self.cfg.out_channels, g, g)
        fh, fw = self.schedule.merge(stage)
        gh, gw = self.stage_grid(stage)
        out = unpatchify(out, self.schedule.base, self.cfg.out_channels * fh * fw, gh, gw)
        return depth_to_space(out, fh, fw)

    # ---- forward --------------------------------------------------------------------------------------
    def forward_stage(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, stage: int,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        block_mods, final_mod, cls = self.conditioning(t, y, stage)
        m = self.num_class_tokens
        img = self.embed(x, stage)  # (B, L0, D)
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
        if stage is not None or self.schedule is None:
            return self.forward_stage(x, t, y, self.fine_stage if stage is None else stage, attn_mask)
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

    def flops(self, stage: int | None = None) -> int:
        """Analytic FLOPs of one forward pass at ``stage`` (default: the finest), fvcore's convention
        (components/flops.py); the trajectory average over stages is counting's."""
        stage = self.fine_stage if stage is None else stage
        cfg, m = self.cfg, self.num_class_tokens
        tokens = self.stage_tokens(stage)
        total = (self.time_embed.flops() + self.class_embed.flops() + self.modulation.flops()
                 + self.embedder(stage).flops(tokens))
        for level, blocks in enumerate(self.levels):
            if level > 0:
                block, (gh, gw) = self.upsample(level, stage)
                tokens = cfg.grid(level) ** 2
                total += block.flops(gh, gw, m) + self.skips[level - 1].flops(tokens)
            total += sum(blk.flops(tokens + m) for blk in blocks)
        return total + self.head_layer(stage).flops(tokens)
