"""Analytic FLOP conventions shared by every component (a leaf: it imports nothing of the suite).

The suite counts FLOPs the way fvcore does (and DiT reported them): one multiply-add is one FLOP;
Linear and Conv layers and the attention matmuls are counted; LayerNorm counts 4 FLOPs per element
without affine parameters (5 with); element-wise ops, softmax, embedding look-ups and FFTs count 0.
Each component implements ``flops(...)`` for batch 1 with these helpers. Under ``tally()`` the helpers also
sum what they return by kind ("linear": Linear and Conv layers, "norm", "attention", and
"conv_transpose_output_extra": what charging a transposed conv per output position adds), which is the
breakdown the MPDiT paper's convention needs; FLOPs counted without a helper are the rest. So call a helper
once per layer it counts (never ``2 * linear(...)``); tests/test_counting.py checks the kinds against fvcore.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Iterator

_tally: Counter | None = None


@contextmanager
def tally() -> Iterator[Counter]:
    """Collect the helpers' FLOPs by kind while the block runs."""
    global _tally
    outer, _tally = _tally, Counter()
    try:
        yield _tally
    finally:
        _tally = outer


def _counted(kind: str, n: int) -> int:
    if _tally is not None:
        _tally[kind] += n
    return n


def linear(tokens: int, d_in: int, d_out: int) -> int:
    return _counted("linear", tokens * d_in * d_out)


def layer_norm(tokens: int, dim: int, affine: bool = False) -> int:
    return _counted("norm", tokens * dim * (5 if affine else 4))


def attention_matmuls(tokens: int, dim: int) -> int:
    """q @ k^T and attn @ v over all heads."""
    return _counted("attention", 2 * tokens * tokens * dim)


def conv_transpose(tokens_in: int, d_in: int, d_out: int, factor: int) -> int:
    """ConvTranspose2d with kernel = stride = factor, charged per input position (fvcore's count, like the
    Linear expansion). Tallies the per-OUTPUT-position charge some counters use (factor^2 times more) under
    "conv_transpose_output_extra", which the MPDiT paper's convention adds."""
    true = tokens_in * d_in * d_out * factor ** 2
    if _tally is not None:
        _tally["conv_transpose_output_extra"] += true * (factor ** 2 - 1)
    return _counted("linear", true)
