"""Per configuration, the mean over training seeds with a 95 % interval, and a verdict against the reference.

Configurations are the runs sharing a label (replicates differ only by training seed). The tests:

- interval of a configuration: with n >= 2 seeds, Student's t over the seeds' values (mean +- t(0.975,
  n-1) s / sqrt(n)); with one seed, that run's own bootstrap interval (the spread of one evaluation only).
- difference to the reference, paired by seed where at least two seeds match: Student's t on the
  per-seed differences (the same seed means the same data order and initial noise stream).
- otherwise a bootstrap of the difference: each replicate resamples each side's seeds, picks one of each
  chosen run's evaluation replicates and differences the means, so both the seed-to-seed and the
  sample-to-sample spread enter. Two single runs evaluated with the same bootstrap draws are differenced
  replicate by replicate (paired by sample index).

A difference whose 95 % interval excludes 0 is "better" or "worse" (by the metric's direction), else "no
detectable difference". Nothing here corrects for the many comparisons of one report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy import stats

from mpdit_bench.evaluation.bootstrap import LEVEL, centred_interval
from mpdit_bench.evaluation.metric_table import clip, higher_is_better

REPLICATES, SEED = 4000, 0
PAIRED_T, BOOTSTRAP = "paired t over seeds", "bootstrap of the difference"


@dataclass
class Summary:
    label: str
    metric: str
    n: int                   # seeds with a value
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    method: str              # how the interval was made


@dataclass
class Verdict:
    label: str
    metric: str
    diff: Optional[float]    # mean(configuration) - mean(reference)
    low: Optional[float]
    high: Optional[float]
    test: str
    verdict: str


def metric_value(rec: dict[str, Any], metric: str) -> Optional[float]:
    """A record's value of ``metric``; None where it was not computed (null or NaN), never 0."""
    v = (rec.get("metrics") or {}).get(metric)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def by_seed(records: list[dict[str, Any]], metric: str) -> dict[int, dict[str, Any]]:
    """The records that have ``metric``, keyed by training seed."""
    return {int(r.get("seed") or 0): r for r in records if metric_value(r, metric) is not None}


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of Student's t interval; the values of n >= 2 seeds."""
    x = np.asarray(values, np.float64)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def summarise(label: str, records: list[dict[str, Any]], metric: str) -> Summary:
    runs = by_seed(records, metric)
    values = [metric_value(r, metric) for r in runs.values()]
    if len(values) >= 2:
        mean, low, high = t_interval(values)
        low, high = clip(metric, low, high)  # a distance is >= 0, a fraction in [0, 1]
        return Summary(label, metric, len(values), mean, low, high, f"t over {len(values)} seeds")
    if len(values) == 1:
        ci = ((next(iter(runs.values())).get("intervals") or {}).get(metric)) or (None, None)
        return Summary(label, metric, 1, values[0], ci[0], ci[1], "one seed: bootstrap of its evaluation"
                       if ci[0] is not None else "one seed: no interval")
    return Summary(label, metric, 0, None, None, None, "no value")


def _decide(metric: str, diff: float, low: float, high: float) -> str:
    if low > 0 or high < 0:
        return "better" if (diff > 0) == higher_is_better(metric) else "worse"
    return "no detectable difference"


def _replicates(rec: dict[str, Any], metric: str) -> np.ndarray:
    reps = (rec.get("bootstrap_replicates") or {}).get(metric)
    return np.asarray(reps if reps else [metric_value(rec, metric)], np.float64)


def compare(label: str, records: list[dict[str, Any]], reference: list[dict[str, Any]], metric: str,
            replicates: int = REPLICATES, seed: int = SEED) -> Verdict:
    """The configuration ``records`` against the ``reference`` configuration's records on ``metric``."""
    mine, ref = by_seed(records, metric), by_seed(reference, metric)
    if not mine or not ref:
        return Verdict(label, metric, None, None, None, "no value", "—")
    common = sorted(set(mine) & set(ref))
    if len(common) >= 2:
        d = [metric_value(mine[s], metric) - metric_value(ref[s], metric) for s in common]
        diff, low, high = t_interval(d)
        return Verdict(label, metric, diff, low, high, f"{PAIRED_T} (n={len(common)})",
                       _decide(metric, diff, low, high))
    diff = (np.mean([metric_value(r, metric) for r in mine.values()])
            - np.mean([metric_value(r, metric) for r in ref.values()]))
    a, b = [_replicates(r, metric) for r in mine.values()], [_replicates(r, metric) for r in ref.values()]
    if len(a) == len(b) == 1 and len(a[0]) == len(b[0]) > 1:  # one run each, same draws: paired by index
        spread = a[0] - b[0]
        test = f"{BOOTSTRAP} (one seed each, {len(spread)} paired replicates)"
    else:
        rng = np.random.default_rng(seed)

        def side(runs: list[np.ndarray]) -> np.ndarray:
            picks = rng.integers(0, len(runs), size=(replicates, len(runs)))
            draws = np.array([[runs[k][rng.integers(len(runs[k]))] for k in row] for row in picks])
            return draws.mean(1)

        spread = side(a) - side(b)
        test = f"{BOOTSTRAP} (seeds {len(a)} vs {len(b)}, two-level, {replicates} replicates)"
    low, high = centred_interval(diff, spread, LEVEL)
    return Verdict(label, metric, float(diff), float(low), float(high), test, _decide(metric, diff, low, high))
