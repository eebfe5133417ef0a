"""A small, independent forward of a PPFlow state dict in PPFlow's own names and conventions (t = 0 noise,
prediction data - noise, raw t into the sinusoid), 2 or 3 levels, plain and guided. It shares no code with
the suite: the tests hold the suite's import against it.

Written from PPFlow's conventions: the stage is chosen by t alone (t <= 0.5 coarse 2x2 space-to-depth; with 3
levels 0.5 < t <= 0.75 a width-only space-to-depth by 2; else the base patch); the level embedding row and
the position table are the stage's index in coarse-to-fine order; the output head emits (p, q, c') per
token, c' over out_channels x merge, and with learned sigma the first half of c' is kept before the inverse
space-to-depth. Guidance acts on channels 0..2 with the scale of the stage.
"""

from __future__ import annotations

import bisect
import math

import torch
import torch.nn.functional as F

GUIDED = 3  # channels PPFlow's guidance mixes; the rest come back as the forward gave them


def merges(levels: int) -> list[tuple[int, int]]:
    """Space-to-depth factors (rows, cols) per stage, coarse first."""
    return [(2, 2), (1, 1)] if levels == 2 else [(2, 2), (1, 2), (1, 1)]


def boundaries(levels: int) -> list[float]:
    return [0.5] if levels == 2 else [0.5, 0.75]


def stage_of(t: float, levels: int) -> int:
    if t <= 0.5:
        return 0
    if levels == 3 and t <= 0.75:
        return 1
    return levels - 1


# ---- fixed tables -------------------------------------------------------------------------------------------
def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double().reshape(-1, 1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def position_table(dim: int, fine_grid: int, merge: tuple[int, int]) -> torch.Tensor:
    """(1, tokens, dim): a token's coordinates on the fine grid, columns in the first half of the channels."""
    rows = torch.arange(0, fine_grid, merge[0])
    cols = torch.arange(0, fine_grid, merge[1])
    row_of = rows.repeat_interleave(len(cols))  # tokens row-major
    col_of = cols.repeat(len(rows))
    table = torch.cat([sincos_1d(dim // 2, col_of), sincos_1d(dim // 2, row_of)], dim=1)
    return table.float().unsqueeze(0)


# ---- pixel folding ------------------------------------------------------------------------------------------
def fold(x: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C fh fw, H/fh, W/fw); channel c fh fw + i fw + j holds pixel (fh h + i, fw w + j)."""
    parts = torch.stack([torch.stack([x[:, :, i::fh, j::fw] for j in range(fw)], dim=2) for i in range(fh)], dim=2)
    B, C, _, _, h, w = parts.shape
    return parts.reshape(B, C * fh * fw, h, w)


def unfold(z: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
    """Inverse of ``fold``."""
    B, Ck, h, w = z.shape
    parts = z.reshape(B, Ck // (fh * fw), fh, fw, h, w)
    out = z.new_empty(B, Ck // (fh * fw), h * fh, w * fw)
    for i in range(fh):
        for j in range(fw):
            out[:, :, i::fh, j::fw] = parts[:, :, i, j]
    return out


# ---- the network --------------------------------------------------------------------------------------------
def linear(state: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])


def time_features(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def attention(state: dict, name: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    B, L, D = x.shape
    q, k, v = linear(state, f"{name}.qkv", x).reshape(B, L, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(D // heads)).softmax(dim=-1)
    return linear(state, f"{name}.proj", (weights @ v).transpose(1, 2).reshape(B, L, D))


def block(state: dict, i: int, x: torch.Tensor, c: torch.Tensor, heads: int) -> torch.Tensor:
    name = f"blocks.{i}"
    s_msa, sc_msa, g_msa, s_mlp, sc_mlp, g_mlp = linear(state, f"{name}.adaLN_modulation.1", F.silu(c)).chunk(6, 1)
    x = x + g_msa[:, None] * attention(state, f"{name}.attn", modulate(layer_norm(x), s_msa, sc_msa), heads)
    hidden = F.gelu(linear(state, f"{name}.mlp.fc1", modulate(layer_norm(x), s_mlp, sc_mlp)), approximate="tanh")
    return x + g_mlp[:, None] * linear(state, f"{name}.mlp.fc2", hidden)


def forward(state: dict, x: torch.Tensor, t: float, y: torch.Tensor, heads: int) -> torch.Tensor:
    """PPFlow's prediction (data - noise) at its time t (one t for the batch): (B, C, H, W)."""
    levels = state["level_embedder.embedding_table.weight"].shape[0]
    stage = stage_of(t, levels)
    fh, fw = merges(levels)[stage]
    suffix = "" if stage == levels - 1 else str(stage + 1)  # proj1/linear1 coarse, proj2/linear2 the 2x4 stage
    B, C, H, W = x.shape

    conv = state[f"x_embedder.proj{suffix}.weight"]
    p = conv.shape[-1]
    grid = F.conv2d(fold(x, fh, fw), conv, state[f"x_embedder.proj{suffix}.bias"], stride=p)
    gh, gw = grid.shape[-2:]
    tokens = grid.flatten(2).transpose(1, 2) + state[f"pos_embed.{stage}"]

    t_hidden = F.silu(linear(state, "t_embedder.mlp.0", time_features(torch.full((B,), t))))
    c = (linear(state, "t_embedder.mlp.2", t_hidden)
         + state["y_embedder.embedding_table.weight"][y]
         + state["level_embedder.embedding_table.weight"][stage])
    depth = sum(1 for k in state if k.startswith("blocks.") and k.endswith(".adaLN_modulation.1.weight"))
    for i in range(depth):
        tokens = block(state, i, tokens, c, heads)

    shift, scale = linear(state, "final_layer.adaLN_modulation.1", F.silu(c)).chunk(2, dim=1)
    out = linear(state, f"final_layer.linear{suffix}", modulate(layer_norm(tokens), shift, scale))
    wide = out.shape[-1] // (p * p)  # out_channels x merge
    image = out.reshape(B, gh, gw, p, p, wide).permute(0, 5, 1, 3, 2, 4).reshape(B, wide, gh * p, gw * p)
    learn_sigma = state["final_layer.linear.weight"].shape[0] == 2 * C * p * p
    if learn_sigma:
        image = image[:, : wide // 2]
    return unfold(image, fh, fw)


def forward_guided(state: dict, x: torch.Tensor, t: float, y: torch.Tensor, null: int, scales: list[float],
                   heads: int) -> torch.Tensor:
    """PPFlow's guided batch for x (B): (2B, C, H, W), rows 0..B-1 conditional, B..2B-1 unconditional; the
    first GUIDED channels of both halves are the guided prediction."""
    levels = state["level_embedder.embedding_table.weight"].shape[0]
    w = scales[bisect.bisect_left(boundaries(levels), t)]
    cond = forward(state, x, t, y, heads)
    uncond = forward(state, x, t, torch.full_like(y, null), heads)
    guided = uncond[:, :GUIDED] + w * (cond[:, :GUIDED] - uncond[:, :GUIDED])
    return torch.cat([torch.cat([guided, cond[:, GUIDED:]], 1), torch.cat([guided, uncond[:, GUIDED:]], 1)])


# ---- a random state dict in PPFlow's names ------------------------------------------------------------------
def random_state(levels: int, hidden: int = 64, depth: int = 2, patch: int = 2, channels: int = 4,
                 input_size: int = 16, classes: int = 10, seed: int = 0, std: float = 0.02,
                 table_std: float = 0.5) -> dict:
    """Every tensor random, N(0, std), the label and level tables N(0, table_std) (so that labels and stages
    visibly move the output), but the position tables, which follow ``position_table``; learned sigma."""
    g = torch.Generator().manual_seed(seed)
    out_ch, D, p = 2 * channels, hidden, patch
    shapes = {"x_embedder.proj.weight": (D, channels, p, p), "x_embedder.proj.bias": (D,),
              "x_embedder.proj1.weight": (D, 4 * channels, p, p), "x_embedder.proj1.bias": (D,),
              "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
              "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
              "y_embedder.embedding_table.weight": (classes + 1, D),
              "level_embedder.embedding_table.weight": (levels, D),
              "final_layer.linear.weight": (p * p * out_ch, D), "final_layer.linear.bias": (p * p * out_ch,),
              "final_layer.adaLN_modulation.1.weight": (2 * D, D), "final_layer.adaLN_modulation.1.bias": (2 * D,),
              "final_layer.linear1.weight": (p * p * out_ch * 4, D), "final_layer.linear1.bias": (p * p * out_ch * 4,)}
    if levels == 3:
        shapes.update({"x_embedder.proj2.weight": (D, 2 * channels, p, p), "x_embedder.proj2.bias": (D,),
                       "final_layer.linear2.weight": (p * p * out_ch * 2, D),
                       "final_layer.linear2.bias": (p * p * out_ch * 2,)})
    for i in range(depth):
        for part, rows, cols in (("attn.qkv", 3 * D, D), ("attn.proj", D, D), ("mlp.fc1", 4 * D, D),
                                 ("mlp.fc2", D, 4 * D), ("adaLN_modulation.1", 6 * D, D)):
            shapes[f"blocks.{i}.{part}.weight"], shapes[f"blocks.{i}.{part}.bias"] = (rows, cols), (rows,)
    state = {k: torch.randn(shape, generator=g) * (table_std if "embedding_table" in k else std)
             for k, shape in shapes.items()}
    for stage, merge in enumerate(merges(levels)):
        state[f"pos_embed.{stage}"] = position_table(D, input_size // p, merge)
    return state
