"""Modulation: conditioning vector c (B, D) -> six chunks per block and (shift, scale) for the final layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mpdit_bench.components import flops
from mpdit_bench.registry import register


@register("modulation", "per_block")
class PerBlockModulation(nn.Module):
    """DiT's adaLN-Zero: every block has its own SiLU -> Linear(D, 6D), the final layer its own Linear(D, 2D)."""

    def __init__(self, hidden_size: int, depth: int):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(hidden_size, 6 * hidden_size) for _ in range(depth))
        self.final = nn.Linear(hidden_size, 2 * hidden_size)

    def forward(self, c: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """-> per-block (B, 6, D) chunks, final (B, 2, D) = (shift, scale)."""
        c = F.silu(c)
        per_block = [lin(c).unflatten(1, (6, -1)) for lin in self.blocks]
        return per_block, self.final(c).unflatten(1, (2, -1))

    def init_weights(self) -> None:
        for lin in [*self.blocks, self.final]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def flops(self) -> int:
        return sum(flops.linear(1, m.in_features, m.out_features) for m in [*self.blocks, self.final])


@register("modulation", "shared")
class SharedModulation(nn.Module):
    """MPDiT's shared AdaIN: one SiLU -> Linear(D, 6D) whose chunks every block uses unchanged;
    the final layer reuses the MLP-branch shift and scale (chunks 4 and 5)."""

    def __init__(self, hidden_size: int, depth: int):
        super().__init__()
        self.depth = depth
        self.linear = nn.Linear(hidden_size, 6 * hidden_size)

    def forward(self, c: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        chunks = self.linear(F.silu(c)).unflatten(1, (6, -1))
        return [chunks] * self.depth, chunks[:, 3:5]

    def init_weights(self) -> None:
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def flops(self) -> int:
        return flops.linear(1, self.linear.in_features, self.linear.out_features)
