"""Patch n' Pack: several samples per sequence, so a mixed-stage batch goes through the blocks in one pass.

The mask is BOOLEAN (True = may attend), so that attention really is confined to each sample; PPFlow's code
passes a float 0/1 mask, which sdpa adds to the scores, letting packed samples see each other.
``blocks.Attention`` refuses non-boolean masks.
"""

from __future__ import annotations

from typing import Sequence

import torch


def segment_mask(ids: torch.Tensor) -> torch.Tensor:
    """(G, L) segment id of every slot -> (G, 1, L, L) boolean, True where query and key share a segment."""
    return (ids[:, :, None] == ids[:, None, :]).unsqueeze(1)


def block_diagonal_mask(segment_lengths: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(L, L) boolean mask of one sequence holding segments of these lengths."""
    ids = torch.repeat_interleave(torch.arange(len(segment_lengths), device=device),
                                  torch.tensor(list(segment_lengths), device=device))
    return segment_mask(ids[None])[0, 0]


def assign_sequences(lengths: Sequence[int], capacity: int) -> list[tuple[int, int]]:
    """Greedy packing in order: (sequence index, offset) of each segment; a sequence holds <= capacity tokens."""
    if any(n > capacity for n in lengths):
        raise ValueError(f"a segment of {max(lengths)} tokens does not fit sequences of {capacity}")
    places, seq, used = [], 0, 0
    for n in lengths:
        if used + n > capacity:
            seq, used = seq + 1, 0
        places.append((seq, used))
        used += n
    return places


def forward_packed(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                   stage: int | None = None, per_sequence: int | None = None) -> torch.Tensor:
    """A one-level schedule model with several samples packed in each sequence (PPFlow's Patch n' Pack).

    Without ``stage`` the batch may mix stages: each sample keeps its own stage (from t), samples are packed
    (coarse first, greedily) into sequences as long as one fine sample, and the whole batch goes through the
    blocks once. With ``stage`` and ``per_sequence``, that many samples of one stage share each sequence.
    A segment is one sample's class tokens then its image tokens; the boolean mask keeps segments apart
    (padding attends only to itself) and the modulation is given per token.
    Equal to ``model(x, t, y)`` (or ``model(x, t, y, stage=stage)``) up to float rounding."""
    if model.cfg.num_levels != 1:
        raise ValueError("Patch n' Pack is implemented for one-level (PPFlow) models only")
    sched, m, B = model.schedule, model.num_class_tokens, x.shape[0]
    stages = sched.stage_of(t) if stage is None else torch.full((B,), stage, dtype=torch.long, device=x.device)
    block_mods, final_mod, cls = model.conditioning(t, y, stages)

    present = stages.unique().tolist()
    members = {s: (stages == s).nonzero().squeeze(1) for s in present}
    segments: list[torch.Tensor] = [None] * B  # one (m + L_s, D) segment per sample
    for s, idx in members.items():
        h = model.embed(x[idx], s)  # (n, L_s, D)
        if cls is not None:
            h = torch.cat([cls[idx], h], dim=1)
        for k, i in enumerate(idx.tolist()):
            segments[i] = h[k]
    order = torch.argsort(stages.cpu(), stable=True).tolist()  # coarse first
    lengths = [segments[i].shape[0] for i in order]
    capacity = per_sequence * max(lengths) if per_sequence else m + model.stage_tokens(sched.fine_stage)
    places = assign_sequences(lengths, capacity)

    G = places[-1][0] + 1
    owner = torch.full((G, capacity), -1, dtype=torch.long)  # sample of each slot, -1 = padding
    for i, n, (g, offset) in zip(order, lengths, places):
        owner[g, offset:offset + n] = i
    owner = owner.to(x.device)
    slots = owner >= 0
    h = x.new_zeros((G, capacity, segments[0].shape[-1]), dtype=segments[0].dtype)
    h[slots] = torch.cat([segments[i] for i in order])  # row-major slots follow `order` and offsets
    ids = torch.where(slots, owner, B + torch.arange(capacity, device=x.device)[None])
    mask = segment_mask(ids)  # (G, 1, capacity, capacity)
    gather = owner.clamp(min=0)

    def per_token(mod: torch.Tensor) -> torch.Tensor:
        return mod[gather].permute(0, 2, 1, 3)  # (B, 6, D) -> (G, capacity, 6, D) -> (G, 6, capacity, D)

    shared = all(mod is block_mods[0] for mod in block_mods)  # shared AdaIN: expand once
    expanded = per_token(block_mods[0]) if shared else None
    for blk, mod in zip(model.levels[0], block_mods):
        h = blk(h, expanded if shared else per_token(mod), mask)

    pieces = dict(zip(order, h[slots].split(lengths)))  # (sum of segments, D) -> one segment per sample
    out = None
    for s, idx in members.items():
        img = torch.stack([pieces[i] for i in idx.tolist()])[:, m:]  # (n, L_s, D)
        part = model.head(img, final_mod[idx], s)
        if out is None:
            out = part.new_empty((B, *part.shape[1:]))
        out[idx] = part
    return out


__all__ = ["segment_mask", "block_diagonal_mask", "assign_sequences", "forward_packed"]
