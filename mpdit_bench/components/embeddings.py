"""Patch embeddings, the fine-level skip embedding and fixed 2-D sin-cos position embeddings."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mpdit_bench.components import flops


class PatchEmbed(nn.Module):
    """Conv with kernel = stride = p: (B, C, H, W) -> (B, (H/p)(W/p), D), tokens in row-major order."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)

    def init_weights(self) -> None:
        # DiT: Xavier-uniform on the conv seen as a Linear over flattened patches.
        w = self.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.proj.bias)

    def flops(self, tokens: int) -> int:
        conv = self.proj
        return flops.linear(tokens, conv.in_channels * self.patch_size ** 2, conv.out_channels)


class SkipEmbed(nn.Module):
    """MPDiT's skip into a finer level: PatchEmbed at that level's patch size, then Linear(D, D)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch = PatchEmbed(in_channels, dim, patch_size)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.patch(x))

    def flops(self, tokens: int) -> int:
        return self.patch.flops(tokens) + flops.linear(tokens, self.proj.in_features, self.proj.out_features)


def sincos_2d(dim: int, grid_h: int, grid_w: int | None = None, stride: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding (MAE/DiT layout): (grid_h * grid_w, dim), row-major.

    ``stride`` places the grid's coordinates on a finer reference grid (PPFlow's coarse levels).
    """
    grid_w = grid_h if grid_w is None else grid_w
    ys = np.arange(grid_h, dtype=np.float64) * stride[0]
    xs = np.arange(grid_w, dtype=np.float64) * stride[1]
    gx, gy = np.meshgrid(xs, ys)  # DiT embeds the w coordinate in the first half
    return np.concatenate([_sincos_1d(dim // 2, gx), _sincos_1d(dim // 2, gy)], axis=1)


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def frozen_pos_embed(dim: int, grid: int, **kwargs) -> nn.Parameter:
    """A (1, grid*grid, dim) sin-cos table stored as a frozen Parameter (counted in params, as in DiT)."""
    table = torch.from_numpy(sincos_2d(dim, grid, **kwargs)).float().unsqueeze(0)
    return nn.Parameter(table, requires_grad=False)


def unpatchify(x: torch.Tensor, p: int, channels: int, gh: int, gw: int) -> torch.Tensor:
    """(B, gh gw, p p C) tokens in row-major order -> (B, C, gh p, gw p)."""
    x = x.reshape(x.shape[0], gh, gw, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], channels, gh * p, gw * p)
