"""A component defined outside the suite: one Linear per coarse token, then a nearest-neighbour expand."""

import torch
from torch import nn

from mpdit_bench.components import flops
from mpdit_bench.registry import register


@register("upsample", "linear_nearest")
class NearestExpand(nn.Module):
    """Linear(D, D) per coarse token, then each token copied to its f x f finer positions."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__()
        self.dim, self.factor = hidden_size, factor
        self.linear = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:  # (B, h*w, D) -> (B, f*f*h*w, D)
        B, _, D = x.shape
        x = self.linear(x).view(B, h, 1, w, 1, D).expand(B, h, self.factor, w, self.factor, D)
        return x.reshape(B, -1, D)

    def flops(self, h: int, w: int) -> int:
        return flops.linear(h * w, self.dim, self.dim)
