"""Per configuration, the mean over training seeds with a 95 % interval, and a verdict against the reference.

Configurations are the runs sharing a label (replicates differ only by training seed). The tests:

- interval of a configuration: with n >= 2 seeds, Student's t over the seeds' values (mean +- t(0.975,
  n-1) s / sqrt(n)); with one seed, that run's own bootstrap interval (the spread of one evaluation only).
- difference to the reference, paired by seed where at least two seeds match: Student's t on the
  per-seed differences (the same seed means the same data order and initial noise stream), with the
  smallest difference the design could have detected at 80 % power and, for a stated effect (the paper's
  difference), the seeds needed to detect it (``reports/power.py``).
- with at least two seeds on each side but fewer than two in common: a two-level bootstrap of the
  difference: each replicate resamples each side's seeds, picks one of each chosen run's evaluation
  replicates and differences the means, so both the seed-to-seed and the sample-to-sample spread enter.
- with one seed on either side there is no verdict ("not compared (one seed)"): a bootstrap of one
  evaluation covers the sampling noise of that evaluation, not the spread between training seeds. An
  experiment may ask for that comparison anyway (``eval.single_seed: evaluation-noise``); its verdicts then
  say "(evaluation noise only)".
- with an equivalence margin for the metric: two one-sided tests, "equivalent within ±delta" or "not shown
  equivalent".

A difference whose 95 % interval excludes 0 is "better" or "worse" (by the metric's direction), else "no
detectable difference". ``holm`` adjusts the secondary metrics' verdicts over a report's table; the primary
metric's verdicts stand as tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy import stats

from mpdit_bench.evaluation.bootstrap import LEVEL, centred_interval
from mpdit_bench.evaluation.metric_table import clip, higher_is_better
from mpdit_bench.reports.power import (Equivalence, detectable_difference, paired_t, seeds_needed, tost,
                                       holm as holm_adjust)

REPLICATES, SEED = 4000, 0
PAIRED_T, BOOTSTRAP = "paired t over seeds", "bootstrap of the difference"
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"
NOT_COMPARED, NOISE_ONLY = "not compared (one seed)", "evaluation noise only"


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
    p: Optional[float] = None            # two-sided p-value of the test
    p_holm: Optional[float] = None       # after Holm over the report's secondary comparisons
    detectable: Optional[float] = None   # smallest |difference| detected with 80 % power by this design
    effect: Optional[float] = None       # a stated difference (the paper's), and the seeds to detect it
    seeds_for_effect: Optional[int] = None
    equivalence: Optional[Equivalence] = None

    @property
    def decided(self) -> bool:
        return self.verdict in (BETTER, WORSE) or self.verdict.startswith((BETTER + " ", WORSE + " "))


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
        return BETTER if (diff > 0) == higher_is_better(metric) else WORSE
    return NO_DIFFERENCE


def _replicates(rec: dict[str, Any], metric: str) -> np.ndarray:
    reps = (rec.get("bootstrap_replicates") or {}).get(metric)
    return np.asarray(reps if reps else [metric_value(rec, metric)], np.float64)


def _bootstrap_p(diff: float, spread: np.ndarray) -> float:
    """Two-sided p-value of a zero difference from bootstrap replicates centred on their mean."""
    centred = spread - spread.mean()
    return float(min(1.0, np.mean(np.abs(centred) >= abs(diff))))


def _paired(label: str, metric: str, d: list[float], effect: Optional[float], margin: Optional[float]) -> Verdict:
    diff, low, high = t_interval(d)
    sd = float(np.std(d, ddof=1))
    out = Verdict(label, metric, diff, low, high, f"{PAIRED_T} (n={len(d)})", _decide(metric, diff, low, high),
                  p=paired_t(d), detectable=detectable_difference(sd, len(d)), effect=effect,
                  seeds_for_effect=seeds_needed(effect, sd) if effect else None)
    if margin is not None:
        out.equivalence = tost(d, margin)
        out.verdict = out.equivalence.verdict
    return out


def _two_level(label: str, metric: str, mine: dict, ref: dict, replicates: int, seed: int) -> Verdict:
    diff = (np.mean([metric_value(r, metric) for r in mine.values()])
            - np.mean([metric_value(r, metric) for r in ref.values()]))
    a, b = [_replicates(r, metric) for r in mine.values()], [_replicates(r, metric) for r in ref.values()]
    rng = np.random.default_rng(seed)

    def side(runs: list[np.ndarray]) -> np.ndarray:
        picks = rng.integers(0, len(runs), size=(replicates, len(runs)))
        draws = np.array([[runs[k][rng.integers(len(runs[k]))] for k in row] for row in picks])
        return draws.mean(1)

    spread = side(a) - side(b)
    low, high = centred_interval(diff, spread, LEVEL)
    # normal approximation of the detectable difference: (z_0.975 + z_0.8) x the difference's spread
    detectable = float((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * spread.std(ddof=1))
    return Verdict(label, metric, float(diff), float(low), float(high),
                   f"{BOOTSTRAP} (seeds {len(a)} vs {len(b)}, two-level, {replicates} replicates)",
                   _decide(metric, diff, low, high), p=_bootstrap_p(diff, spread), detectable=detectable)


def _noise_only(label: str, metric: str, mine: dict, ref: dict) -> Verdict:
    (a,), (b,) = [_replicates(r, metric) for r in mine.values()], [_replicates(r, metric) for r in ref.values()]
    diff = float(metric_value(next(iter(mine.values())), metric) - metric_value(next(iter(ref.values())), metric))
    if not len(a) == len(b) > 1:
        return Verdict(label, metric, diff, None, None, "one seed each, no paired evaluation replicates",
                       NOT_COMPARED)
    spread = a - b  # same bootstrap draws on both sides: paired by sample index
    low, high = centred_interval(diff, spread, LEVEL)
    return Verdict(label, metric, diff, float(low), float(high),
                   f"{NOISE_ONLY}: {BOOTSTRAP} (one seed each, {len(spread)} paired replicates)",
                   f"{_decide(metric, diff, low, high)} ({NOISE_ONLY})", p=_bootstrap_p(diff, spread))


def compare(label: str, records: list[dict[str, Any]], reference: list[dict[str, Any]], metric: str,
            replicates: int = REPLICATES, seed: int = SEED, noise_only: bool = False,
            effect: Optional[float] = None, margin: Optional[float] = None) -> Verdict:
    """The configuration ``records`` against the ``reference`` configuration's records on ``metric``.

    ``noise_only``: compare single-seed configurations on their evaluation noise (named so in the verdict);
    ``effect``: a stated difference whose seeds-needed is reported; ``margin``: test equivalence within it."""
    mine, ref = by_seed(records, metric), by_seed(reference, metric)
    if not mine or not ref:
        return Verdict(label, metric, None, None, None, "no value", "—")
    common = sorted(set(mine) & set(ref))
    if len(common) >= 2:
        d = [metric_value(mine[s], metric) - metric_value(ref[s], metric) for s in common]
        return _paired(label, metric, d, effect, margin)
    if len(mine) >= 2 and len(ref) >= 2:
        return _two_level(label, metric, mine, ref, replicates, seed)
    if noise_only and len(mine) == len(ref) == 1:
        return _noise_only(label, metric, mine, ref)
    diff = (np.mean([metric_value(r, metric) for r in mine.values()])
            - np.mean([metric_value(r, metric) for r in ref.values()]))
    return Verdict(label, metric, float(diff), None, None, f"seeds {len(mine)} vs {len(ref)}", NOT_COMPARED)


def holm(verdicts: list[Verdict], primary: str, alpha: float = 1 - LEVEL) -> list[Verdict]:
    """Holm-adjust the p-values of every verdict but the primary metric's, over the whole list, and turn a
    "better" / "worse" whose adjusted p is not below ``alpha`` into "no detectable difference"."""
    family = [v for v in verdicts if v.metric != primary and v.p is not None and v.equivalence is None]
    for v, adjusted in zip(family, holm_adjust([v.p for v in family])):
        v.p_holm = adjusted
        if v.decided and adjusted >= alpha:
            v.verdict = f"{NO_DIFFERENCE} (after Holm)"
    return verdicts
