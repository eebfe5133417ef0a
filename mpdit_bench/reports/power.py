"""What a comparison over training seeds could have detected, equivalence, and multiple comparisons.

All tests are on per-seed differences (configuration minus reference, paired by seed), the design the
verdicts use:

- ``paired_t``: the two-sided p-value of the paired t test;
- ``detectable_difference``: the smallest true difference the paired t test at level alpha detects with
  the given power, from the observed standard deviation of the differences and the number of seeds. Power
  comes from the noncentral t distribution (no normal approximation, which flatters small n);
- ``seeds_needed``: the fewest seeds at which a stated difference is detected with that power;
- ``tost``: two one-sided tests against an equivalence margin +-delta (equivalent when both reject);
- ``holm``: Holm's step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import optimize, stats

ALPHA, POWER = 0.05, 0.80
MOST_SEEDS = 10_000


def paired_t(diffs: Sequence[float]) -> float:
    """Two-sided p-value of H0: mean difference = 0 (needs >= 2 differences)."""
    d = np.asarray(diffs, np.float64)
    if len(d) < 2:
        raise ValueError(f"the paired t test needs at least 2 seeds, got {len(d)}")
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() / (sd / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


def power_of_paired_t(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Probability that the two-sided paired t test over ``n`` seeds rejects when the true mean difference
    is ``effect`` and the differences' standard deviation is ``sd``."""
    if n < 2:
        return 0.0
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = abs(effect) / sd * math.sqrt(n)
    upper = stats.nct.sf(critical, df, noncentrality)
    lower = stats.nct.cdf(-critical, df, noncentrality)  # rejecting on the wrong side; NaN once it underflows
    return float(upper + (0.0 if math.isnan(lower) else lower))


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> Optional[float]:
    """The smallest |mean difference| detected with probability ``power``; None when it cannot be said
    (fewer than 2 seeds, or no spread observed)."""
    if n < 2 or not sd > 0:
        return None
    upper = sd
    while power_of_paired_t(upper, sd, n, alpha) < power:
        upper *= 2
    return float(optimize.brentq(lambda e: power_of_paired_t(e, sd, n, alpha) - power, 0.0, upper, xtol=1e-12 * sd))


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> Optional[int]:
    """The fewest seeds (>= 2) at which a true difference ``effect`` is detected with probability ``power``;
    None when the spread is unknown or zero, or when more than MOST_SEEDS would be needed."""
    if not sd > 0 or effect == 0:
        return None
    for n in range(2, MOST_SEEDS + 1):
        if power_of_paired_t(effect, sd, n, alpha) >= power:
            return n
    return None


@dataclass
class Equivalence:
    delta: float
    p: float              # the larger of the two one-sided p-values
    low: float            # the 1 - 2 alpha interval of the mean difference
    high: float
    equivalent: bool

    @property
    def verdict(self) -> str:
        return (f"equivalent within ±{self.delta:g}" if self.equivalent
                else f"not shown equivalent within ±{self.delta:g}")


def tost(diffs: Sequence[float], delta: float, alpha: float = ALPHA) -> Equivalence:
    """Two one-sided paired t tests of H0: mean <= -delta and H0: mean >= +delta."""
    if not delta > 0:
        raise ValueError(f"an equivalence margin must be > 0, got {delta}")
    d = np.asarray(diffs, np.float64)
    if len(d) < 2:
        raise ValueError(f"two one-sided tests need at least 2 seeds, got {len(d)}")
    df, mean, se = len(d) - 1, float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    if se == 0:
        p = 0.0 if abs(mean) < delta else 1.0
    else:
        p = float(max(stats.t.sf((mean + delta) / se, df), stats.t.cdf((mean - delta) / se, df)))
    half = stats.t.ppf(1 - alpha, df) * se
    return Equivalence(delta, p, mean - half, mean + half, p < alpha)


def holm(pvalues: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm-adjusted p-values, in the input order; None entries are left out of the family."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    adjusted: list[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
