"""PPFlow's training and sampling pieces, as small functions the training engine and samplers call.

- ``sample_stage_times``: each batch split by stage in fixed proportions (50/50, 50/25/25), t uniform
  inside each stage (suite t: 0 data, 1 noise), samples grouped by stage so the model runs one
  sub-forward per stage.
- ``guidance_scale_at``: stage-level classifier-free guidance, one scale per stage (used by sampling.py).
- ``forward_packed``: Patch n' Pack, several samples per sequence, a mixed-stage batch in one pass.
  The mask is BOOLEAN (True = may attend), so that attention really is confined to each sample;
  PPFlow's code passes a float 0/1 mask, which sdpa adds to the scores, letting packed samples see
  each other. ``blocks.Attention`` refuses non-boolean masks.
"""

from __future__ import annotations

from typing import Sequence

import torch

from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.ppflow.schedule import PatchSchedule


def as_schedule(stages: PatchSchedule | ModelConfig | torch.nn.Module) -> PatchSchedule:
    """A PatchSchedule from itself, a config with time_patch_sizes, or a PatchScheduleDiT."""
    if isinstance(stages, PatchSchedule):
        return stages
    if isinstance(stages, ModelConfig):
        return PatchSchedule.from_config(stages)
    if isinstance(getattr(stages, "schedule", None), PatchSchedule):
        return stages.schedule
    raise TypeError(f"expected a PatchSchedule, a ModelConfig with a patch schedule or a PatchScheduleDiT, "
                    f"got {type(stages).__name__}")


def stage_counts(batch: int, proportions: Sequence[float]) -> list[int]:
    """Split ``batch`` by ``proportions`` (largest remainder, so the counts add up to ``batch``)."""
    if not proportions or any(p < 0 for p in proportions) or sum(proportions) <= 0:
        raise ConfigError("proportions", list(proportions), "non-negative numbers, one per stage, sum > 0")
    total = float(sum(proportions))
    exact = [batch * p / total for p in proportions]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: batch - sum(counts)]:
        counts[i] += 1
    return counts


def sample_stage_times(batch: int, stages: PatchSchedule | ModelConfig | torch.nn.Module,
                       proportions: Sequence[float] | None = None,
                       generator: torch.Generator | None = None, device: torch.device | str = "cpu"
                       ) -> torch.Tensor:
    """(batch,) t drawn stage by stage: counts from ``proportions`` (default: each stage's share of [0, 1]),
    t uniform in the stage's [lo, hi). Coarse (noisy) stage first, samples contiguous by stage."""
    sched = as_schedule(stages)
    proportions = sched.fractions() if proportions is None else tuple(proportions)
    if len(proportions) != sched.num_stages:
        raise ConfigError("proportions", list(proportions), f"{sched.num_stages} numbers, one per stage")
    parts = []
    for stage, n in enumerate(stage_counts(batch, proportions)):
        lo, hi = sched.time_range(stage)
        u = torch.rand(n, generator=generator, device="cpu" if generator is None else generator.device)
        below_hi = torch.nextafter(torch.tensor(hi), torch.tensor(lo))  # float32 rounding must not reach hi
        parts.append((lo + (hi - lo) * u).clamp(lo, below_hi))
    return torch.cat(parts).to(device)


def guidance_scale_at(t: torch.Tensor, scales: Sequence[float],
                      stages: PatchSchedule | ModelConfig | torch.nn.Module) -> torch.Tensor:
    """(B,) t -> (B,) guidance scale of each sample's stage (``scales`` coarse first, e.g. [1.0, 3.0])."""
    sched = as_schedule(stages)
    if len(scales) != sched.num_stages:
        raise ConfigError("cfg_scales", list(scales), f"{sched.num_stages} numbers, one per stage, coarse first")
    table = torch.tensor([float(s) for s in scales], device=t.device)
    return table[sched.stage_of(t)]


# ---- equal training compute ------------------------------------------------------------------------------------
def training_flops_per_sample(model: torch.nn.Module, proportions: Sequence[float] | None = None) -> float:
    """Analytic training FLOPs for one sample: 3 x forward (backward ~ 2 x forward), the forward averaged
    over the stages in the training ``proportions`` (default: the stages' shares of t); any model works."""
    if not getattr(model.cfg, "time_patch_sizes", ()):
        return 3.0 * model.flops()
    sched = as_schedule(model)
    proportions = sched.fractions() if proportions is None else tuple(proportions)
    if len(proportions) != sched.num_stages:
        raise ConfigError("stage_proportions", list(proportions), f"{sched.num_stages} numbers, one per stage")
    total = float(sum(proportions))
    return 3.0 * sum(p / total * model.flops(s) for s, p in enumerate(proportions))


def equal_compute_steps(reference_steps: int, reference_flops: float, run_flops: float) -> int:
    """Steps giving a run the reference's training compute at the same batch size."""
    if reference_steps < 1 or reference_flops <= 0 or run_flops <= 0:
        raise ConfigError("budget", (reference_steps, reference_flops, run_flops), "positive steps and FLOPs")
    return max(1, round(reference_steps * reference_flops / run_flops))


# ---- Patch n' Pack ------------------------------------------------------------------------------------------
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
    """A one-level PatchScheduleDiT with several samples packed in each sequence (PPFlow's Patch n' Pack).

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


__all__ = ["as_schedule", "stage_counts", "sample_stage_times", "guidance_scale_at",
           "training_flops_per_sample", "equal_compute_steps",
           "segment_mask", "block_diagonal_mask", "assign_sequences", "forward_packed"]
