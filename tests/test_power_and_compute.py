"""Power of the paired t test, two one-sided tests, Holm, and compute to target on synthetic curves."""

import math

import numpy as np
import pytest
from scipy import stats

from mpdit_bench.reports.compute_to_target import compute_to_target, equal_compute, reach, value_at
from mpdit_bench.reports.power import (detectable_difference, holm, paired_t, power_of_paired_t, seeds_needed,
                                       tost)


def test_detectable_difference_has_the_stated_power_by_simulation():
    rng = np.random.default_rng(0)
    for n in (3, 5):
        delta = detectable_difference(2.0, n)
        diffs = rng.normal(delta, 2.0, size=(40_000, n))
        t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(n))
        rejected = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
        assert rejected == pytest.approx(0.80, abs=0.01), (n, rejected)  # MC standard error 0.002


def test_power_matches_textbook_sample_sizes():
    # Paired t, two-sided alpha 0.05, power 0.80: dz = 0.5 needs 34 pairs and dz = 1 needs 10 (Cohen; G*Power).
    assert seeds_needed(0.5, 1.0) == 34 and seeds_needed(1.0, 1.0) == 10
    assert power_of_paired_t(1.0, 1.0, 10) == pytest.approx(0.803, abs=0.002)
    # with many seeds the normal approximation (z_0.975 + z_0.8) sd / sqrt(n) holds
    assert detectable_difference(1.0, 2000) == pytest.approx((1.959964 + 0.841621) / math.sqrt(2000), rel=2e-3)
    assert detectable_difference(1.0, 1) is None and detectable_difference(0.0, 3) is None


def test_detectable_difference_scales_with_the_spread_and_shrinks_with_seeds():
    assert detectable_difference(3.0, 4) == pytest.approx(3 * detectable_difference(1.0, 4), rel=1e-9)
    assert detectable_difference(1.0, 3) > detectable_difference(1.0, 6) > detectable_difference(1.0, 12)


def test_two_one_sided_tests():
    same = [0.0, 0.0, 0.0]
    assert tost(same, delta=1.0).equivalent
    close = np.random.default_rng(1).normal(0.0, 0.1, 8)
    assert tost(close, delta=1.0).equivalent and "equivalent within ±1" in tost(close, 1.0).verdict
    shifted = np.random.default_rng(2).normal(5.0, 0.1, 8)
    result = tost(shifted, delta=1.0)
    assert not result.equivalent and result.verdict.startswith("not shown equivalent")
    wide = np.random.default_rng(3).normal(0.0, 3.0, 3)  # centred but too noisy to show equivalence
    assert not tost(wide, delta=1.0).equivalent
    with pytest.raises(ValueError, match="margin"):
        tost(same, delta=0.0)


def test_holm_gives_the_textbook_adjustment():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, made monotone: 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.01]) == pytest.approx([0.5, None, 0.02])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 capped at 1, then monotone


def test_paired_t_agrees_with_scipy():
    d = [0.3, -0.1, 0.5, 0.2]
    assert paired_t(d) == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-12)


def test_reach_interpolates_and_censors():
    x, y = [1.0, 2.0, 3.0, 4.0], [10.0, 8.0, 6.0, 4.0]
    assert reach(x, y, 7.0, lower_is_better=True).compute == pytest.approx(2.5)
    assert not reach(x, y, 7.0, lower_is_better=True).censored
    never = reach(x, y, 1.0, lower_is_better=True)
    assert never.censored and never.compute == 4.0 and str(never) == "> 4"
    assert reach(x, [1.0, 2.0, 3.0, 4.0], 2.5, lower_is_better=False).compute == pytest.approx(2.5)
    assert value_at(x, y, 3.5) == pytest.approx(5.0) and value_at(x, y, 5.0) is None
    assert equal_compute([(x, y), ([1.0, 3.0], [9.0, 7.0])], 2.0) == pytest.approx([8.0, 8.0])
    with pytest.raises(ValueError, match="increase"):
        reach([2.0, 1.0], [1.0, 2.0], 1.5, True)


def test_compute_to_target_interval_covers_the_true_crossing_at_about_its_level():
    # Per seed y = A exp(-x / tau), log tau ~ N(log tau0, s^2): the crossing of T is tau ln(A/T), whose
    # geometric mean over seeds is tau0 ln(A/T). Curves are read on a fine grid, as evaluations would be.
    rng = np.random.default_rng(7)
    A, T, tau0, s, grid = 100.0, 20.0, 10.0, 0.25, np.linspace(0.1, 80.0, 400)
    truth = tau0 * math.log(A / T)
    covered, trials = 0, 400
    for _ in range(trials):
        taus = tau0 * np.exp(rng.normal(0.0, s, 3))
        result = compute_to_target([(grid, A * np.exp(-grid / tau)) for tau in taus], T, lower_is_better=True)
        assert not result.censored
        covered += result.low <= truth <= result.high
    assert 0.92 <= covered / trials <= 0.98, covered / trials


def test_a_seed_that_never_reaches_the_target_is_censored_not_extrapolated():
    grid = np.linspace(1.0, 10.0, 10)
    fast, slow = (grid, 10.0 / grid), (grid, 20.0 / grid)  # slow reaches 1.5 only past 10
    result = compute_to_target([fast, slow], 1.5, lower_is_better=True)
    assert result.censored and result.estimate is None and result.high is None
    assert result.censored_above == 10.0 and result.ratio_to(100.0) is None
