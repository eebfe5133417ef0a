"""The modules a coarse PPFlow stage adds to the model: a lossless space-to-depth patch embedding and its
inverse for the output head."""

from __future__ import annotations

import torch
from torch import nn

from mpdit_bench.components.embeddings import PatchEmbed


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


def init_level_embed(weight: torch.Tensor, how: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """The level embedding (stages, D) in place: "zero", or "normal" N(0, 0.02) as PPFlow's (its value
    whether the model is trained from scratch or adapted from a model without stages)."""
    with torch.no_grad():
        if how != "normal":
            return weight.zero_()
        if generator is None:
            return nn.init.normal_(weight, std=0.02)
        return weight.copy_(torch.randn(weight.shape, generator=generator) * 0.02)


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


__all__ = ["SpaceToDepthPatchEmbed", "init_level_embed", "space_to_depth", "depth_to_space"]
