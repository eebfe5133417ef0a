"""Training compute to reach a target quality, read off evaluation curves, and quality at equal compute.

A curve is one run's evaluations along training: (training FLOPs, metric value) points in order of compute.

- ``reach``: the compute at which a curve first reaches the target, by linear interpolation between the
  last point short of it and the first point at or past it. A curve that never reaches it is censored: the
  answer is "more than its last compute", never an extrapolation.
- ``compute_to_target``: over seeds, the per-seed reaches and a 95 % interval: Student's t on the log of the
  per-seed compute (compute is positive and compared as a ratio), back-transformed, so the interval is one
  of the geometric mean. With a censored seed the point estimate and the upper bound are censored too
  ("> X", X the largest compute that seed reached without the target), while the lower bound stays a bound
  from the uncensored seeds' and the censored seeds' last compute.
- ``value_at``: a curve read at a given compute, by linear interpolation, None outside its points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Reach:
    compute: float        # where the target is reached, or the curve's last compute when censored
    censored: bool

    def __str__(self) -> str:
        return f"> {self.compute:.3g}" if self.censored else f"{self.compute:.3g}"


def _points(compute: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(compute, np.float64), np.asarray(values, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"a curve needs as many compute points as values, got {x.shape} and {y.shape}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("a curve's compute must increase from point to point")
    return x, y


def reaches(value: float, target: float, lower_is_better: bool) -> bool:
    return value <= target if lower_is_better else value >= target


def reach(compute: Sequence[float], values: Sequence[float], target: float, lower_is_better: bool) -> Reach:
    """First compute at which the curve reaches ``target``; censored at the last point when it never does."""
    x, y = _points(compute, values)
    for i in range(len(x)):
        if reaches(y[i], target, lower_is_better):
            if i == 0 or y[i] == y[i - 1]:
                return Reach(float(x[i]), False)
            frac = (target - y[i - 1]) / (y[i] - y[i - 1])
            return Reach(float(x[i - 1] + frac * (x[i] - x[i - 1])), False)
    return Reach(float(x[-1]), True)


def value_at(compute: Sequence[float], values: Sequence[float], at: float) -> Optional[float]:
    """The curve at compute ``at`` (linear between points), None outside the curve's first and last point."""
    x, y = _points(compute, values)
    if at < x[0] or at > x[-1]:
        return None
    return float(np.interp(at, x, y))


@dataclass
class ComputeToTarget:
    target: float
    reaches: list[Reach]          # one per seed
    estimate: Optional[float]     # geometric mean of the per-seed compute; None if a seed is censored
    low: Optional[float]
    high: Optional[float]         # None when censored: the upper bound is unknown
    censored_above: Optional[float]  # with censoring: "more than this" (the largest censored compute)
    method: str

    @property
    def censored(self) -> bool:
        return any(r.censored for r in self.reaches)

    def ratio_to(self, reference_compute: float) -> Optional[float]:
        """Compute to target as a fraction of the reference's (8.8 % in MPDiT's form); None when censored."""
        return None if self.estimate is None else self.estimate / reference_compute


def compute_to_target(curves: Sequence[tuple[Sequence[float], Sequence[float]]], target: float,
                      lower_is_better: bool, level: float = LEVEL) -> ComputeToTarget:
    """Per-seed reach of ``target``, then a t interval over seeds on log compute."""
    if not curves:
        raise ValueError("compute to target needs at least one curve")
    found = [reach(x, y, target, lower_is_better) for x, y in curves]
    logs = np.log([r.compute for r in found])
    n = len(found)
    censored = [r.compute for r in found if r.censored]
    if n >= 2:
        sd = logs.std(ddof=1)
        half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        method = f"per-seed linear interpolation, t over {n} seeds on log compute ({level:.0%})"
    else:
        half = math.nan
        method = "one seed: linear interpolation, no interval"
    centre = float(np.exp(logs.mean()))
    low = None if math.isnan(half) else float(np.exp(logs.mean() - half))
    high = None if math.isnan(half) else float(np.exp(logs.mean() + half))
    if censored:  # censored values are lower bounds: the mean and the upper bound are lower bounds too
        return ComputeToTarget(target, found, None, low, None, max(censored), method + "; censored")
    return ComputeToTarget(target, found, centre, low, high, None, method)


def equal_compute(curves: Sequence[tuple[Sequence[float], Sequence[float]]], at: float) -> list[Optional[float]]:
    """Each curve read at the same training compute ``at``."""
    return [value_at(x, y, at) for x, y in curves]
