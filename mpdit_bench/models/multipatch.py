"""The multi-patch diffusion transformer: levels of DiT blocks, coarse to fine, joined by upsample blocks.

One level is the isotropic DiT/SiT. Two levels (4, 2) with depths (N-k, k) is MPDiT: the first N-k
blocks see large patches, an upsample block moves the sequence to the fine grid, a skip embeds the
input at the fine patch size, and the last k blocks refine. Any strictly decreasing list of patch
sizes works, e.g. (8, 4, 2).
"""

from __future__ import annotations

import torch
from torch import nn

from mpdit_bench import registry
from mpdit_bench.components.upsample import build_upsample
from mpdit_bench.config import ModelConfig
from mpdit_bench.models.blocks import FinalLayer, TransformerBlock, init_linear_xavier
from mpdit_bench.models.embeddings import PatchEmbed, SkipEmbed, frozen_pos_embed


class MultiPatchDiT(nn.Module):
    """forward(x (B, C, H, W) latents, t (B,) in [0, 1] with 0 = data, y (B,) labels; C = null) -> (B, C_out, H, W)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, patches, m = cfg.hidden_size, cfg.patch_sizes, cfg.class_tokens
        self.num_class_tokens = m
        self.null_class = cfg.num_classes

        self.time_embed = registry.create("time_embedder", cfg.time_embedder, hidden_size=D,
                                          num_layers=cfg.time_embedder_layers)
        self.class_embed = registry.create("class_embedder", "tokens" if m else "label",
                                           num_classes=cfg.num_classes, hidden_size=D, num_tokens=m)
        self.modulation = registry.create("modulation", cfg.modulation, hidden_size=D, depth=cfg.depth)

        self.patch_embed = PatchEmbed(cfg.in_channels, D, patches[0])
        self.skips = nn.ModuleList(SkipEmbed(cfg.in_channels, D, p) for p in patches[1:])
        self.upsamples = nn.ModuleList(
            build_upsample(cfg, coarse // fine) for coarse, fine in zip(patches, patches[1:]))
        self.pos_embed = nn.ParameterList(frozen_pos_embed(D, cfg.grid(i)) for i in range(len(patches)))
        self.levels = nn.ModuleList(
            nn.ModuleList(TransformerBlock(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(depth))
            for depth in cfg.depths)
        self.final = FinalLayer(D, patches[-1], cfg.out_channels)
        self.init_weights()

    def init_weights(self) -> None:
        init_linear_xavier(self)
        for module in self.modules():  # component-specific init (zero modulation/final, N(0, .02) tables)
            if module is not self and hasattr(module, "init_weights"):
                module.init_weights()
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        vec, cls = self.class_embed(y)  # (B, D) or None, (B, m, D) or None
        c = self.time_embed(t)
        if vec is not None:
            c = c + vec
        block_mods, final_mod = self.modulation(c)

        m = self.num_class_tokens
        img = self.patch_embed(x) + self.pos_embed[0]  # (B, L0, D)
        block_index = 0
        for level, blocks in enumerate(self.levels):
            if level > 0:
                grid = self.cfg.grid(level - 1)
                img, cls = self.upsamples[level - 1](img, cls, grid, grid)  # (B, L, D) -> (B, f^2 L, D)
                img = img + self.skips[level - 1](x) + self.pos_embed[level]
            h = img if cls is None else torch.cat([cls, img], dim=1)
            for block in blocks:
                h = block(h, block_mods[block_index], attn_mask)
                block_index += 1
            cls, img = (h[:, :m], h[:, m:]) if m else (None, h)
        out = self.final(img, final_mod[:, 0], final_mod[:, 1])  # (B, L, p*p*C_out)
        return self.unpatchify(out)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, H, W)."""
        p, c, g = self.cfg.patch_sizes[-1], self.cfg.out_channels, self.cfg.grid(-1)
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def flops(self) -> int:
        """Analytic FLOPs for one sample (fvcore's convention, see models/flops.py)."""
        cfg, m = self.cfg, self.num_class_tokens
        total = (self.time_embed.flops() + self.class_embed.flops() + self.modulation.flops()
                 + self.patch_embed.flops(cfg.grid(0) ** 2))
        for level, blocks in enumerate(self.levels):
            tokens = cfg.grid(level) ** 2
            if level > 0:
                grid = cfg.grid(level - 1)
                total += self.upsamples[level - 1].flops(grid, grid, m) + self.skips[level - 1].flops(tokens)
            total += sum(block.flops(tokens + m) for block in blocks)
        return total + self.final.flops(cfg.grid(-1) ** 2)
