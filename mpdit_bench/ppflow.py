"""PPFlow's training and sampling pieces, as small functions the training engine and samplers call.

- ``sample_stage_times``: each batch split by stage in fixed proportions (50/50, 50/25/25), t uniform
  inside each stage (suite t: 0 data, 1 noise), samples grouped by stage so the model runs one
  sub-forward per stage.
- ``guidance_scale_at`` / ``guided_velocity``: stage-level classifier-free guidance, one scale per stage.
- ``block_diagonal_mask`` / ``forward_packed``: Patch n' Pack, several samples of one stage in one sequence.
  The mask is BOOLEAN (True = may attend), so that attention really is confined to each sample;
  PPFlow's code passes a float 0/1 mask, which sdpa adds to the scores, letting packed samples see
  each other. ``blocks.Attention`` refuses non-boolean masks.
"""

from __future__ import annotations

from typing import Sequence

import torch

from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.models.schedule import PatchSchedule


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
        parts.append(lo + (hi - lo) * u)
    return torch.cat(parts).to(device)


def guidance_scale_at(t: torch.Tensor, scales: Sequence[float],
                      stages: PatchSchedule | ModelConfig | torch.nn.Module) -> torch.Tensor:
    """(B,) t -> (B,) guidance scale of each sample's stage (``scales`` coarse first, e.g. [1.0, 3.0])."""
    sched = as_schedule(stages)
    if len(scales) != sched.num_stages:
        raise ConfigError("cfg_scales", list(scales), f"{sched.num_stages} numbers, one per stage, coarse first")
    table = torch.tensor([float(s) for s in scales], device=t.device)
    return table[sched.stage_of(t)]


def guided_velocity(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                    scales: Sequence[float]) -> torch.Tensor:
    """Classifier-free guidance with one scale per stage: v_u + w(t) (v_c - v_u) on the velocity channels.

    Conditional and null-class halves run as one batch; the null class is cfg.num_classes."""
    cfg = model.cfg
    w = guidance_scale_at(t, scales, model).to(x.dtype)
    null = torch.full_like(y, cfg.num_classes)
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))[:, : cfg.in_channels]
    cond, uncond = out.chunk(2)
    return uncond + w.view(-1, 1, 1, 1) * (cond - uncond)


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
def block_diagonal_mask(segment_lengths: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(L, L) boolean, True where query and key belong to the same segment (L = sum of lengths)."""
    ids = torch.repeat_interleave(torch.arange(len(segment_lengths), device=device),
                                  torch.tensor(list(segment_lengths), device=device))
    return ids[:, None] == ids[None, :]


def pack(h: torch.Tensor, per_sequence: int) -> torch.Tensor:
    """(B, L, ...) -> (B / n, n L, ...): n consecutive samples side by side in one sequence."""
    B, L = h.shape[:2]
    return h.reshape(B // per_sequence, per_sequence * L, *h.shape[2:])


def unpack(h: torch.Tensor, per_sequence: int) -> torch.Tensor:
    """Inverse of ``pack``: (B / n, n L, ...) -> (B, L, ...)."""
    G, nL = h.shape[:2]
    return h.reshape(G * per_sequence, nL // per_sequence, *h.shape[2:])


def per_token_modulation(mod: torch.Tensor, tokens: int, per_sequence: int) -> torch.Tensor:
    """(B, K, D) chunks of each sample -> (B / n, K, n L, D): every token carries its own sample's chunks."""
    B, K, D = mod.shape
    mod = mod[:, :, None].expand(B, K, tokens, D)  # (B, K, L, D)
    return pack(mod.transpose(1, 2), per_sequence).transpose(1, 2)  # (B/n, K, nL, D)


def forward_packed(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, stage: int,
                   per_sequence: int) -> torch.Tensor:
    """A one-level PatchScheduleDiT at ``stage`` with ``per_sequence`` samples packed in each sequence.

    Each sample's segment is its class tokens then its image tokens; the block-diagonal boolean mask keeps
    segments apart and the modulation is given per token. Equal to ``model(x, t, y, stage=stage)``."""
    if model.cfg.num_levels != 1:
        raise ValueError("Patch n' Pack is implemented for one-level (PPFlow) models only")
    B = x.shape[0]
    if B % per_sequence:
        raise ValueError(f"batch {B} is not a multiple of per_sequence={per_sequence}")
    block_mods, final_mod, cls = model.conditioning(t, y, stage)
    img = model.embed(x, stage)  # (B, L, D)
    h = img if cls is None else torch.cat([cls, img], dim=1)  # (B, m + L, D)
    seg = h.shape[1]
    mask = block_diagonal_mask([seg] * per_sequence, device=x.device)
    h = pack(h, per_sequence)  # (B/n, n(m + L), D)
    shared = all(mod is block_mods[0] for mod in block_mods)  # shared AdaIN: expand once
    expanded = per_token_modulation(block_mods[0], seg, per_sequence) if shared else None
    for blk, mod in zip(model.levels[0], block_mods):
        h = blk(h, expanded if shared else per_token_modulation(mod, seg, per_sequence), mask)
    h = unpack(h, per_sequence)[:, model.num_class_tokens:]  # (B, L, D)
    return model.head(h, final_mod, stage)


__all__ = ["as_schedule", "stage_counts", "sample_stage_times", "guidance_scale_at", "guided_velocity",
           "training_flops_per_sample", "equal_compute_steps",
           "block_diagonal_mask", "pack", "unpack", "per_token_modulation", "forward_packed"]
