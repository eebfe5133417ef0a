"""PPFlow's patch schedule over sampling time: the stages, their t ranges, the t draw and guidance per stage.

A ``PatchSchedule`` cuts t into stages. Stage s holds ``b_s <= t < b_(s-1)`` (b_-1 = +inf, so t = 1 is in
stage 0) in the suite's convention t = 0 data, t = 1 noise. PPFlow's own code runs t = 0 noise to 1 data
and puts "t <= 0.5" in the coarse stage; with t_suite = 1 - t_ppflow that is t_suite >= 0.5 here.

The model side (per-stage embedding, upsample and head inside MultiPatchDiT's forward) is in
models/multipatch.py; the modules a coarse stage adds are in ppflow/modules.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Sequence

import torch

from mpdit_bench.config import ConfigError, ModelConfig, parse_patch_shape, patch_shape_name


DEFAULT_BOUNDARIES = {2: [0.5], 3: [0.5, 0.25]}


def default_schedule(stages: int, base: int) -> tuple[list[str], list[float]]:
    """PPFlow's schedules on base patch p: 2 stages (2p)x(2p), p x p; 3 stages add p x 2p (their "4x2")."""
    big, small = f"{2 * base}x{2 * base}", f"{base}x{base}"
    if stages == 2:
        return [big, small], DEFAULT_BOUNDARIES[2]
    if stages == 3:
        return [big, f"{base}x{2 * base}", small], DEFAULT_BOUNDARIES[3]
    raise ConfigError("levels", stages, "2 or 3")


@dataclass(frozen=True)
class PatchSchedule:
    """Stages coarse (noisy) first: a (rows, cols) patch each, and the t boundaries between them."""

    shapes: tuple[tuple[int, int], ...]
    boundaries: tuple[float, ...]
    base: int  # the patch the shapes are built from (the first level's patch in patch_sizes)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "PatchSchedule":
        if not cfg.time_patch_sizes:
            raise ValueError("config has no patch schedule (time_patch_sizes is empty)")
        shapes = tuple(parse_patch_shape(s) for s in cfg.time_patch_sizes)
        return cls(shapes, tuple(cfg.time_boundaries), cfg.patch_sizes[0])

    @property
    def num_stages(self) -> int:
        return len(self.shapes)

    @property
    def fine_stage(self) -> int:
        return self.num_stages - 1

    def name(self, stage: int) -> str:
        return patch_shape_name(self.shapes[stage])

    def merge(self, stage: int) -> tuple[int, int]:
        """Space-to-depth factors (rows, cols) from the base patch to this stage's patch."""
        rows, cols = self.shapes[stage]
        return rows // self.base, cols // self.base

    def time_range(self, stage: int) -> tuple[float, float]:
        """[lo, hi) in suite t; the coarsest stage also holds t = 1."""
        edges = (1.0, *self.boundaries, 0.0)
        return edges[stage + 1], edges[stage]

    def fractions(self) -> tuple[float, ...]:
        """Share of a trajectory spent in each stage when sampling steps are uniform in t."""
        return tuple(hi - lo for lo, hi in map(self.time_range, range(self.num_stages)))

    def evaluation_fractions(self, times) -> tuple[float, ...]:
        """Share of network evaluations in each stage for a sampler that evaluates at ``times`` (e.g. a Heun
        grid: both evaluations of every step); pass it to ``counting.trajectory_flops``."""
        counts = torch.bincount(self.stage_of(torch.as_tensor(times, dtype=torch.float64)),
                                minlength=self.num_stages)
        return tuple((counts.double() / counts.sum()).tolist())

    def stage_of(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) t -> (B,) long stage index: the number of boundaries strictly above t."""
        bounds = torch.tensor(self.boundaries, dtype=torch.float64, device=t.device)
        return (t.double()[:, None] < bounds[None]).sum(dim=1)


def as_schedule(stages: PatchSchedule | ModelConfig | torch.nn.Module) -> PatchSchedule:
    """A PatchSchedule from itself, a config with time_patch_sizes, or a model with a schedule."""
    if isinstance(stages, PatchSchedule):
        return stages
    if isinstance(stages, ModelConfig):
        return PatchSchedule.from_config(stages)
    if isinstance(getattr(stages, "schedule", None), PatchSchedule):
        return stages.schedule
    raise TypeError(f"expected a PatchSchedule, a ModelConfig with a patch schedule or a model with a schedule, "
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


__all__ = ["DEFAULT_BOUNDARIES", "PatchSchedule", "default_schedule", "as_schedule", "stage_counts", "sample_stage_times", "guidance_scale_at"]
