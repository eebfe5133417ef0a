"""Quality along training from the records' evaluation curves: per-seed curves, their mean and band on a
common compute grid, and each configuration's training compute to reach its reference's final quality.

A record's ``curve`` holds evaluation points ``{step, images_seen, train_flops, wall_s, metrics, intervals}``
in order of step, the final step included. Records without such points (older records, or runs evaluated
only at the end) have no curve and are left out of this part of a report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats

from mpdit_bench.evaluation.metric_table import HELDOUT_LOSS, higher_is_better
from mpdit_bench.reports.compute_to_target import ComputeToTarget, compute_to_target, value_at
from mpdit_bench.sweeps.records import curve_points

GRID_POINTS = 60
HARDWARE_KEYS = ("machine", "cpus", "gpus")  # what makes wall seconds comparable; the host name does not


@dataclass
class Curve:
    """One run's evaluations of one metric along training."""

    seed: int
    flops: np.ndarray   # counted training FLOPs at each point, increasing
    values: np.ndarray
    wall: Optional[np.ndarray]  # wall seconds at each point; None when a point lacks it


def curve_of(record: dict[str, Any], metric: str) -> Optional[Curve]:
    """The record's curve of ``metric``: points with a value and a compute, strictly increasing in compute."""
    flops, values, wall = [], [], []
    for p in curve_points(record):
        value, x = p["metrics"].get(metric), p.get("train_flops")
        if value is None or x is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if flops and x <= flops[-1]:
            continue
        flops.append(float(x)), values.append(float(value)), wall.append(p.get("wall_s"))
    if not flops:
        return None
    has_wall = all(w is not None for w in wall) and all(b > a for a, b in zip(wall, wall[1:]))
    return Curve(int(record.get("seed") or 0), np.asarray(flops), np.asarray(values),
                 np.asarray(wall, np.float64) if has_wall else None)


def curves(records: list[dict[str, Any]], metric: str) -> list[Curve]:
    return [c for c in (curve_of(r, metric) for r in records) if c is not None]


def curve_metric(records: list[dict[str, Any]], primary: Optional[str]) -> Optional[str]:
    """The primary metric where the records have its curve, else the held-out loss; None without curves."""
    for metric in (primary, HELDOUT_LOSS):
        if metric and any(curve_of(r, metric) for r in records):
            return metric
    return None


@dataclass
class Band:
    """Mean over seeds on a common compute grid, with a 95 % t band (None with one seed)."""

    flops: np.ndarray
    mean: np.ndarray
    low: Optional[np.ndarray]
    high: Optional[np.ndarray]
    seeds: int


def band(seed_curves: Sequence[Curve], points: int = GRID_POINTS) -> Optional[Band]:
    """Each seed's curve interpolated linearly onto the compute range all seeds cover, then averaged."""
    if not seed_curves:
        return None
    start, stop = max(c.flops[0] for c in seed_curves), min(c.flops[-1] for c in seed_curves)
    if stop < start:  # the seeds' curves do not overlap: nothing to average
        return None
    grid = np.linspace(start, stop, points) if stop > start else np.array([start])
    ys = np.stack([np.interp(grid, c.flops, c.values) for c in seed_curves])
    mean, n = ys.mean(0), len(seed_curves)
    if n < 2:
        return Band(grid, mean, None, None, n)
    half = stats.t.ppf(0.975, n - 1) * ys.std(0, ddof=1) / math.sqrt(n)
    return Band(grid, mean, mean - half, mean + half, n)


def same_hardware(records: Sequence[dict[str, Any]]) -> bool:
    """Whether every record ran on the same kind of machine (so that wall seconds compare)."""
    kinds = {tuple(str((r.get("hardware") or {}).get(k)) for k in HARDWARE_KEYS) for r in records}
    return len(kinds) == 1 and all(r.get("hardware") for r in records)


@dataclass
class ToTarget:
    """One configuration against its reference on the curve metric."""

    label: str
    reference: str
    metric: str
    target: float                      # the reference's final value, mean over its seeds
    reference_flops: float             # the reference's training compute, geometric mean over its seeds
    flops: ComputeToTarget
    wall: Optional[ComputeToTarget]    # only when every run of both ran on the same hardware
    reference_wall: Optional[float]
    reference_end: float               # the compute every reference seed reached
    at_reference_end: tuple[Optional[float], Optional[float]]  # (configuration, reference) read there
    own_end: float                     # the compute every seed of the configuration reached
    at_own_end: tuple[Optional[float], Optional[float]]        # (configuration, reference) read there

    @property
    def ratio(self) -> Optional[float]:
        return self.flops.ratio_to(self.reference_flops)


def _mean_at(seed_curves: Sequence[Curve], at: float) -> Optional[float]:
    values = [value_at(c.flops, c.values, at) for c in seed_curves]
    return None if any(v is None for v in values) else float(np.mean(values))


def _geomean(values: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def to_target(label: str, records: list[dict[str, Any]], reference: str, ref_records: list[dict[str, Any]],
              metric: str) -> Optional[ToTarget]:
    """Compute to reach the reference's final mean, with the reference's own compute and equal-compute reads."""
    mine, ref = curves(records, metric), curves(ref_records, metric)
    if not mine or not ref:
        return None
    target = float(np.mean([c.values[-1] for c in ref]))
    lower = not higher_is_better(metric)
    flops = compute_to_target([(c.flops, c.values) for c in mine], target, lower)
    wall, ref_wall = None, None
    if same_hardware(records + ref_records) and all(c.wall is not None for c in mine + ref):
        wall = compute_to_target([(c.wall, c.values) for c in mine], target, lower)
        ref_wall = _geomean([c.wall[-1] for c in ref])
    # read at the compute every seed reached, so that no seed's curve is extrapolated
    ref_end, own_end = min(c.flops[-1] for c in ref), min(c.flops[-1] for c in mine)
    return ToTarget(label, reference, metric, target, _geomean([c.flops[-1] for c in ref]), flops, wall, ref_wall,
                    ref_end, (_mean_at(mine, ref_end), _mean_at(ref, ref_end)),
                    own_end, (_mean_at(mine, own_end), _mean_at(ref, own_end)))
