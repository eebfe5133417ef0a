"""Transformer block, attention and MLP of a DiT, with modulation supplied from outside the block.

The block owns no modulation weights: a modulation component (per-block adaLN-Zero or MPDiT's
shared AdaIN) hands each block its six chunks (shift, scale, gate for attention and for the MLP).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mpdit_bench.components import flops

def per_token(v: torch.Tensor) -> torch.Tensor:
    """(B, D) modulation -> (B, 1, D), broadcast over tokens; (B, L, D) per-token modulation (packed
    sequences of several samples, PPFlow's Patch n' Pack) is used as it is."""
    return v.unsqueeze(1) if v.dim() == 2 else v


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift with (B, D) modulation broadcast over tokens (or (B, L, D) per token)."""
    return x * (1 + per_token(scale)) + per_token(shift)


class Attention(nn.Module):
    """Multi-head self-attention: qkv Linear with bias, no qk-norm, output projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.explicit = False  # softmax(q k^T) v as plain matmuls, not fused: see `explicit_attention`

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, D = x.shape
        if mask is not None and mask.dtype != torch.bool:
            # sdpa ADDS a float mask to the scores instead of masking (PPFlow's packing bug).
            raise TypeError(f"attention mask must be boolean (True = may attend), got {mask.dtype}")
        q, k, v = self.qkv(x).reshape(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.explicit:
            scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            out = scores.softmax(dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))

    def flops(self, tokens: int) -> int:
        dim = self.proj.in_features
        return (flops.linear(tokens, dim, 3 * dim) + flops.attention_matmuls(tokens, dim)
                + flops.linear(tokens, dim, dim))


@contextlib.contextmanager
def explicit_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, ``model``'s attention layers write attention as plain matmuls so that FLOP counters
    see it; other models in the process keep the fused kernel."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    before = [m.explicit for m in layers]
    for m in layers:
        m.explicit = True
    try:
        yield model
    finally:
        for m, explicit in zip(layers, before):
            m.explicit = explicit


class Mlp(nn.Module):
    """Two Linear layers with tanh-approximated GELU between them."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))

    def flops(self, tokens: int) -> int:
        return (flops.linear(tokens, self.fc1.in_features, self.fc1.out_features)
                + flops.linear(tokens, self.fc2.in_features, self.fc2.out_features))


class TransformerBlock(nn.Module):
    """DiT block: pre-LayerNorm (no affine, eps 1e-6), x = x + gate * f(LN(x) * (1 + scale) + shift)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mod: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, D); mod: (B, 6, D) chunks shift/scale/gate for attention, then for the MLP
        (or (B, 6, L, D) per token); mask: boolean, True = may attend (sdpa semantics)."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod.unbind(1)
        x = x + per_token(gate_a) * self.attn(modulate(self.norm1(x), shift_a, scale_a), mask)
        return x + per_token(gate_m) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))

    def flops(self, tokens: int) -> int:
        dim = self.attn.proj.in_features
        return (self.attn.flops(tokens) + self.mlp.flops(tokens)
                + flops.layer_norm(tokens, dim) + flops.layer_norm(tokens, dim))  # norm1, norm2


class FinalLayer(nn.Module):
    """LayerNorm modulated by (shift, scale), then Linear(D -> p*p*C_out); the model zero-initialises it."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)

    def forward(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.linear(modulate(self.norm(x), shift, scale))

    def flops(self, tokens: int) -> int:
        return (flops.layer_norm(tokens, self.linear.in_features)
                + flops.linear(tokens, self.linear.in_features, self.linear.out_features))


def init_linear_xavier(module: nn.Module) -> None:
    """DiT's init: Xavier-uniform Linear weights and zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


__all__ = ["Attention", "Mlp", "TransformerBlock", "FinalLayer", "modulate", "explicit_attention",
           "init_linear_xavier"]
