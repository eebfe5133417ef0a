"""Upsample blocks joining a coarse level to the next finer one (factor f = coarse patch / fine patch).

Every variant shares MPDiT's tail so that only the spatial expansion differs between them:
expand the image tokens to the f-times finer grid; GELU (tanh); class tokens rejoin; LayerNorm
(no affine) over all tokens; one Linear(D, D) per token, shared by class and image tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mpdit_bench.counting import analytic as flops
from mpdit_bench.registry import register


def pixel_shuffle_tokens(x: torch.Tensor, h: int, w: int, f: int) -> torch.Tensor:
    """(B, h*w, f*f*D) -> (B, (h*f)*(w*f), D), channels grouped as (D, f, f) exactly like nn.PixelShuffle."""
    B, _, C = x.shape
    d = C // (f * f)
    x = x.view(B, h, w, d, f, f).permute(0, 1, 4, 2, 5, 3)  # (B, h, i, w, j, D)
    return x.reshape(B, h * f * w * f, d)


def tokens_to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h*w, D) -> (B, D, h, w)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B, h*w, D)."""
    return x.flatten(2).transpose(1, 2)


class TokenUpsample(nn.Module):
    """Base class: subclasses define ``expand`` (coarse image tokens -> fine image tokens) and its FLOPs."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__()
        self.dim, self.factor = hidden_size, factor
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def expand(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        raise NotImplementedError

    def expand_flops(self, h: int, w: int) -> int:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None, h: int, w: int
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, h*w, D) image tokens, cls: (B, m, D) or None -> ((B, f*f*h*w, D), cls)."""
        x = F.gelu(self.expand(x, h, w), approximate="tanh")
        m = 0 if cls is None else cls.shape[1]
        if cls is not None:
            x = torch.cat([cls, x], dim=1)
        x = self.proj(self.norm(x))
        return x[:, m:], (x[:, :m] if cls is not None else None)

    def flops(self, h: int, w: int, num_class_tokens: int) -> int:
        tokens = self.factor ** 2 * h * w + num_class_tokens
        return (self.expand_flops(h, w) + flops.layer_norm(tokens, self.dim)
                + flops.linear(tokens, self.dim, self.dim))


@register("upsample", "linear")
class LinearUpsample(TokenUpsample):
    """The authors' block: Linear(D -> f*f*D) rearranged to the finer grid like pixel-shuffle."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__(hidden_size, factor)
        self.linear = nn.Linear(hidden_size, factor * factor * hidden_size)

    def expand(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return pixel_shuffle_tokens(self.linear(x), h, w, self.factor)

    def expand_flops(self, h: int, w: int) -> int:
        return flops.linear(h * w, self.dim, self.factor ** 2 * self.dim)


@register("upsample", "conv_transpose")
class ConvTransposeUpsample(TokenUpsample):
    """ConvTranspose2d(D, D, kernel f, stride f): each coarse token paints an f x f patch."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__(hidden_size, factor)
        self.deconv = nn.ConvTranspose2d(hidden_size, hidden_size, kernel_size=factor, stride=factor)

    def expand(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return map_to_tokens(self.deconv(tokens_to_map(x, h, w)))

    def expand_flops(self, h: int, w: int) -> int:
        return flops.linear(h * w, self.dim, self.factor ** 2 * self.dim)


@register("upsample", "mlp")
class MlpUpsample(TokenUpsample):
    """Two-layer MLP Linear(D, D) -> GELU -> Linear(D, f*f*D), then pixel-shuffle."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__(hidden_size, factor)
        self.fc1 = nn.Linear(hidden_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, factor * factor * hidden_size)

    def expand(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return pixel_shuffle_tokens(self.fc2(F.gelu(self.fc1(x), approximate="tanh")), h, w, self.factor)

    def expand_flops(self, h: int, w: int) -> int:
        return flops.linear(h * w, self.dim, self.dim) + flops.linear(h * w, self.dim, self.factor ** 2 * self.dim)


@register("upsample", "conv")
class ConvUpsample(TokenUpsample):
    """Nearest-neighbour upsampling by f, then a 3x3 Conv(D, D) on the fine grid."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__(hidden_size, factor)
        self.conv = nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1)

    def expand(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        fine = F.interpolate(tokens_to_map(x, h, w), scale_factor=self.factor, mode="nearest")
        return map_to_tokens(self.conv(fine))

    def expand_flops(self, h: int, w: int) -> int:
        fine_tokens = self.factor ** 2 * h * w
        # fvcore charges nearest interpolation one FLOP per output element.
        return fine_tokens * self.dim + flops.linear(fine_tokens, 9 * self.dim, self.dim)
