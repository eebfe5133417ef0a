"""Analytic FLOP conventions shared by every component.

The suite counts FLOPs the way fvcore does (and DiT reported them): one multiply-add is one FLOP;
Linear and Conv layers and the attention matmuls are counted; LayerNorm counts 4 FLOPs per element
without affine parameters (5 with); element-wise ops, softmax, embedding look-ups and FFTs count 0.
Each component implements ``flops(...)`` for batch 1 with these helpers.
"""

from __future__ import annotations


def linear(tokens: int, d_in: int, d_out: int) -> int:
    return tokens * d_in * d_out


def layer_norm(tokens: int, dim: int, affine: bool = False) -> int:
    return tokens * dim * (5 if affine else 4)


def attention_matmuls(tokens: int, dim: int) -> int:
    """q @ k^T and attn @ v over all heads."""
    return 2 * tokens * tokens * dim
