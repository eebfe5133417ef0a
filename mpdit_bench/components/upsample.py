"""The upsample block joining a coarse level to the next finer one (factor f = coarse patch / fine patch).

The block is an EXPAND (coarse image tokens -> the f-times finer grid; kind ``upsample``) followed by a
REFINE (kind ``upsample_refine``), as MPDiT's Table 7 varies them:

    expand  linear          Linear(D -> f*f*D) rearranged to the finer grid like pixel-shuffle (the authors')
    expand  conv_transpose  ConvTranspose2d(D, D, kernel f, stride f): each coarse token paints an f x f patch
    refine  none            the expansion is the block's output; class tokens pass unchanged
    refine  linear          GELU, class tokens rejoin, LayerNorm, Linear(D, D) per token (the authors')
    refine  mlp             the same with an MLP D -> r*D -> D (GELU) in place of the Linear (r: upsample_refine_ratio)
    refine  conv            the same with a depthwise 3x3 conv on the image grid, then Linear(D, D) per token

Config keys: ``upsample`` (expand), ``upsample_refine``, ``upsample_refine_ratio``; ``build_upsample`` makes
the block from a config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mpdit_bench import registry
from mpdit_bench.components import flops
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


def xavier_conv(conv: nn.Module) -> None:
    """The model's init for Linear layers (Xavier-uniform, zero bias) on a conv's flattened weight."""
    nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
    nn.init.zeros_(conv.bias)


# ---- expand: (B, h*w, D) coarse image tokens -> (B, f*f*h*w, D) ----------------------------------------
@register("upsample", "linear")
class LinearExpand(nn.Module):
    """Linear(D -> f*f*D) rearranged to the finer grid like pixel-shuffle."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__()
        self.dim, self.factor = hidden_size, factor
        self.linear = nn.Linear(hidden_size, factor * factor * hidden_size)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return pixel_shuffle_tokens(self.linear(x), h, w, self.factor)

    def flops(self, h: int, w: int) -> int:
        return flops.linear(h * w, self.dim, self.factor ** 2 * self.dim)


@register("upsample", "conv_transpose")
class ConvTransposeExpand(nn.Module):
    """ConvTranspose2d(D, D, kernel f, stride f): each coarse token paints an f x f patch."""

    def __init__(self, hidden_size: int, factor: int):
        super().__init__()
        self.dim, self.factor = hidden_size, factor
        self.deconv = nn.ConvTranspose2d(hidden_size, hidden_size, kernel_size=factor, stride=factor)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return map_to_tokens(self.deconv(tokens_to_map(x, h, w)))

    def init_weights(self) -> None:
        xavier_conv(self.deconv)

    def flops(self, h: int, w: int) -> int:
        return flops.conv_transpose(h * w, self.dim, self.dim, self.factor)


# ---- refine: fine image tokens and class tokens -> the same shapes ---------------------------------------
@register("upsample_refine", "none")
class NoRefine(nn.Module):
    """The expansion is the output; class tokens pass unchanged."""

    def __init__(self, hidden_size: int, ratio: int):
        super().__init__()

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None, h: int, w: int
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return x, cls

    def flops(self, h: int, w: int, num_class_tokens: int) -> int:
        return 0


class TokenRefine(nn.Module):
    """GELU (tanh) on the expansion, class tokens rejoin, LayerNorm (no affine) over all tokens, then
    ``mix`` (subclasses), so the refines differ only in that last map."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dim = hidden_size
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)

    def mix(self, x: torch.Tensor, m: int, h: int, w: int) -> torch.Tensor:
        raise NotImplementedError

    def mix_flops(self, tokens: int, image_tokens: int) -> int:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None, h: int, w: int
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, h*w, D) fine image tokens (h, w: the fine grid), cls: (B, m, D) or None."""
        x = F.gelu(x, approximate="tanh")
        m = 0 if cls is None else cls.shape[1]
        if cls is not None:
            x = torch.cat([cls, x], dim=1)
        x = self.mix(self.norm(x), m, h, w)
        return x[:, m:], (x[:, :m] if cls is not None else None)

    def flops(self, h: int, w: int, num_class_tokens: int) -> int:
        tokens = h * w + num_class_tokens
        return flops.layer_norm(tokens, self.dim) + self.mix_flops(tokens, h * w)


@register("upsample_refine", "linear")
class LinearRefine(TokenRefine):
    """Linear(D, D) per token, shared by class and image tokens."""

    def __init__(self, hidden_size: int, ratio: int):
        super().__init__(hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def mix(self, x: torch.Tensor, m: int, h: int, w: int) -> torch.Tensor:
        return self.proj(x)

    def mix_flops(self, tokens: int, image_tokens: int) -> int:
        return flops.linear(tokens, self.dim, self.dim)


@register("upsample_refine", "mlp")
class MlpRefine(TokenRefine):
    """MLP D -> r*D -> D (GELU, tanh) per token, shared by class and image tokens."""

    def __init__(self, hidden_size: int, ratio: int):
        super().__init__(hidden_size)
        self.fc1 = nn.Linear(hidden_size, ratio * hidden_size)
        self.fc2 = nn.Linear(ratio * hidden_size, hidden_size)

    def mix(self, x: torch.Tensor, m: int, h: int, w: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))

    def mix_flops(self, tokens: int, image_tokens: int) -> int:
        hidden = self.fc1.out_features
        return flops.linear(tokens, self.dim, hidden) + flops.linear(tokens, hidden, self.dim)


@register("upsample_refine", "conv")
class ConvRefine(TokenRefine):
    """Depthwise 3x3 conv on the image grid (class tokens have no position to convolve), then Linear(D, D)
    per token: about D x D weights, as the paper's "Conv" row prints."""

    def __init__(self, hidden_size: int, ratio: int):
        super().__init__(hidden_size)
        self.depthwise = nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1, groups=hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def mix(self, x: torch.Tensor, m: int, h: int, w: int) -> torch.Tensor:
        img = map_to_tokens(self.depthwise(tokens_to_map(x[:, m:], h, w)))
        return self.proj(torch.cat([x[:, :m], img], dim=1))

    def init_weights(self) -> None:
        xavier_conv(self.depthwise)

    def mix_flops(self, tokens: int, image_tokens: int) -> int:
        return flops.linear(image_tokens, 9, self.dim) + flops.linear(tokens, self.dim, self.dim)


# ---- the block ------------------------------------------------------------------------------------------
class Upsample(nn.Module):
    """expand then refine: ((B, h*w, D), cls) -> ((B, f*f*h*w, D), cls)."""

    def __init__(self, expand: nn.Module, refine: nn.Module, factor: int):
        super().__init__()
        self.expand, self.refine, self.factor = expand, refine, factor

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None, h: int, w: int
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, h*w, D) coarse image tokens, cls: (B, m, D) or None."""
        return self.refine(self.expand(x, h, w), cls, h * self.factor, w * self.factor)

    def flops(self, h: int, w: int, num_class_tokens: int) -> int:
        return self.expand.flops(h, w) + self.refine.flops(h * self.factor, w * self.factor, num_class_tokens)


def build_upsample(cfg, factor: int) -> Upsample:
    """The block a ModelConfig names (``upsample``, ``upsample_refine``, ``upsample_refine_ratio``)."""
    D = cfg.hidden_size
    return Upsample(registry.create("upsample", cfg.upsample, hidden_size=D, factor=factor),
                    registry.create("upsample_refine", cfg.upsample_refine, hidden_size=D,
                                    ratio=cfg.upsample_refine_ratio), factor)
