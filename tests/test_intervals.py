"""Intervals and verdicts: bootstrap coverage on Gaussians with a closed-form Frechet distance, the exact
low-rank replicates, verdicts on identical and on noised sample sets, paired-by-seed tests."""

import numpy as np
import pytest

from _data import needs_fashion_mnist
from mpdit_bench.data.fashion_mnist import load_arrays
from mpdit_bench.evaluation import bootstrap as B
from mpdit_bench.evaluation import metrics as M
from mpdit_bench.reports import verdicts as V


def closed_form_fd(mu1, var1, mu2, var2):
    """Diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2."""
    return float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())


@pytest.mark.parametrize("fixed_reference,blocks", [(False, False), (True, False), (True, True)])
def test_interval_covers_the_true_frechet_distance_at_about_95_percent(fixed_reference, blocks, monkeypatch):
    if blocks:  # the path of 50k-sample evaluations: replicates re-count 50 blocks of rows
        monkeypatch.setattr(B, "BLOCK_ROWS", 100)
    rng = np.random.default_rng(1)
    mu1, var1 = np.zeros(3), np.array([1.0, 2.0, 0.5])
    mu2, var2 = np.array([0.8, -0.4, 0.3]), np.array([1.5, 1.0, 0.5])
    truth = closed_form_fd(mu1, var1, mu2, var2)
    trials, n, m, hits = 150, 400, 400, 0
    for trial in range(trials):
        x = mu1 + rng.normal(size=(n, 3)) * np.sqrt(var1)
        y = mu2 + rng.normal(size=(m, 3)) * np.sqrt(var2)
        point = M.frechet_distance(*M.gaussian_stats(x), *M.gaussian_stats(y))
        if fixed_reference:  # the reference is exact statistics, as an ADM reference batch
            reps = B.frechet_replicates(x, B.Draws.make(150, n, None, seed=trial), ref_stats=(mu2, np.diag(var2)))
            point = M.frechet_distance(*M.gaussian_stats(x), mu2, np.diag(var2))
        else:
            reps = B.frechet_replicates(x, B.Draws.make(150, n, m, seed=trial), ref_x=y)
        low, high = B.interval(point, reps, "fid")
        hits += low <= truth <= high
    rate = hits / trials
    assert 0.88 <= rate <= 0.99, rate  # 95 % stated; binomial sd over 150 trials is 1.8 %


def test_low_rank_replicates_equal_the_direct_computation():
    """Fewer rows than dimensions: the Gram-matrix replicates equal the Frechet distance of the repeated rows."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 64)), rng.normal(size=(60, 64)) + 0.2
    draws = B.Draws.make(3, 40, 60)
    got = B.frechet_replicates(x, draws, ref_x=y)
    fixed = B.frechet_replicates(x, B.Draws(draws.samples, None), ref_stats=M.gaussian_stats(y))
    for b in range(3):
        xr, yr = np.repeat(x, draws.samples[b], 0), np.repeat(y, draws.reference[b], 0)
        assert got[b] == pytest.approx(M.frechet_distance(*M.gaussian_stats(xr), *M.gaussian_stats(yr),
                                                          method="eigh"), rel=1e-7)
        assert fixed[b] == pytest.approx(M.frechet_distance(*M.gaussian_stats(xr), *M.gaussian_stats(y),
                                                            method="eigh"), rel=1e-7)


def test_fd_auto_uses_the_exact_low_rank_form_and_agrees_with_sqrtm():
    from mpdit_bench.evaluation.evaluate import _fd

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 128)), rng.normal(size=(300, 128)) + 0.1
    stats_x, stats_y = M.gaussian_stats(x), M.gaussian_stats(y)
    assert _fd(x, stats_x, y, stats_y, "auto") == pytest.approx(M.frechet_distance(*stats_x, *stats_y,
                                                                                    method="eigh"), rel=1e-6)
    assert _fd(x, stats_x, y, stats_y, "auto") == pytest.approx(_fd(x, stats_x, y, stats_y, "sqrtm"), rel=1e-4)


def record(out: dict, seed: int = 0) -> dict:
    """A run record's statistical part, from an evaluate() result."""
    return {"seed": seed, "metrics": {k: v for k, v in out.items() if isinstance(v, float)},
            "intervals": {k[:-5]: v for k, v in out.items() if k.endswith("_ci95")},
            "bootstrap_replicates": out["bootstrap_replicates"]}




@needs_fashion_mnist
def test_identical_sets_are_no_different_and_a_noised_set_is_worse(tmp_path, monkeypatch):
    from mpdit_bench.evaluation import evaluate, write_npz

    monkeypatch.setenv("MPDIT_CACHE", str(tmp_path / "cache"))
    images, labels = load_arrays("train")
    images, labels = images[:120], labels[:120]
    noised = np.clip(images + np.random.default_rng(0).normal(0, 60, images.shape), 0, 255).astype(np.uint8)
    runs = {}
    for name, pixels in (("a", images), ("b", images), ("noised", noised)):
        path = write_npz(tmp_path / f"{name}.npz", pixels, labels)
        runs[name] = evaluate(path, "fashion-mnist:test:200", metrics="proxy", progress=False, kid_subsets=10,
                              bootstrap=60)
    out = runs["a"]
    assert out["bootstrap"] == 60
    for metric in ("fd_fmnist_proxy", "kid_fmnist_proxy", "precision_fmnist_proxy", "recall_fmnist_proxy",
                   "class_accuracy_fmnist_proxy"):
        low, high = out[f"{metric}_ci95"]
        assert low <= out[metric] <= high and high > low, metric
    # one run each: no verdict unless asked for a comparison of the evaluation noise alone, named so
    assert V.compare("noised", [record(runs["noised"])], [record(runs["a"])],
                     "fd_fmnist_proxy").verdict == V.NOT_COMPARED
    same = V.compare("b", [record(runs["b"])], [record(runs["a"])], "fd_fmnist_proxy", noise_only=True)
    assert same.verdict == "no detectable difference (evaluation noise only)"
    worse = V.compare("noised", [record(runs["noised"])], [record(runs["a"])], "fd_fmnist_proxy", noise_only=True)
    assert worse.verdict == "worse (evaluation noise only)" and worse.low > 0 and V.NOISE_ONLY in worse.test
    assert V.compare("noised", [record(runs["noised"])], [record(runs["a"])], "class_accuracy_fmnist_proxy",
                     noise_only=True).verdict.startswith("worse")  # higher is better: the sign flips


def seeded(values: list[float], metric: str = "fid") -> list[dict]:
    return [{"seed": s, "metrics": {metric: v}} for s, v in enumerate(values)]


def test_paired_by_seed_where_seeds_match():
    ref = seeded([10.0, 12.0, 11.0])
    assert V.compare("same", seeded([10.0, 12.0, 11.0]), ref, "fid").verdict == "no detectable difference"
    shifted = V.compare("worse", seeded([10.5, 12.6, 11.4]), ref, "fid")  # +0.5 +0.6 +0.4: seed-paired
    assert shifted.verdict == "worse" and shifted.test.startswith(V.PAIRED_T)
    noisy = V.compare("noisy", seeded([13.0, 9.0, 11.5]), ref, "fid")
    assert noisy.verdict == "no detectable difference"


def test_summary_is_a_t_interval_over_seeds_clipped_to_the_range():
    s = V.summarise("x", seeded([1.0, 2.0, 3.0], "kid"), "kid")  # KID's unbiased estimate may be < 0
    assert s.n == 3 and s.mean == 2.0 and s.low == pytest.approx(2 - 4.302653 / np.sqrt(3)) and "t over 3" in s.method
    assert V.summarise("x", seeded([1.0, 2.0, 3.0]), "fid").low == 0.0  # a distance is not negative


def test_two_single_seed_runs_get_no_verdict_however_different_their_metrics():
    for gap in (0.01, 50.0, 5000.0):
        mine = [{"seed": 1, "metrics": {"fid": 10.0 + gap}, "intervals": {"fid": [9.9 + gap, 10.1 + gap]},
                 "bootstrap_replicates": {"fid": list(np.linspace(9.9, 10.1, 50) + gap)}}]
        ref = [{"seed": 0, "metrics": {"fid": 10.0}, "intervals": {"fid": [9.9, 10.1]},
                "bootstrap_replicates": {"fid": list(np.linspace(9.9, 10.1, 50))}}]
        verdict = V.compare("same config, other seed", mine, ref, "fid")
        assert verdict.verdict == V.NOT_COMPARED and verdict.low is None and verdict.p is None
    three_vs_one = V.compare("x", seeded([10.0, 11.0, 12.0]), seeded([50.0]), "fid")
    assert three_vs_one.verdict == V.NOT_COMPARED  # one side's seed-to-seed spread is unknown


def test_a_paired_verdict_carries_its_power_and_the_seeds_for_a_stated_effect():
    from mpdit_bench.reports.power import detectable_difference, seeds_needed

    ref, mine = seeded([10.0, 12.0, 11.0]), seeded([10.3, 11.6, 11.5])
    d = [0.3, -0.4, 0.5]
    v = V.compare("x", mine, ref, "fid", effect=-2.0)
    assert v.verdict == "no detectable difference" and v.p > 0.05
    assert v.detectable == pytest.approx(detectable_difference(np.std(d, ddof=1), 3))
    assert v.seeds_for_effect == seeds_needed(-2.0, np.std(d, ddof=1))
    eq = V.compare("x", mine, ref, "fid", margin=5.0)
    assert eq.verdict == "equivalent within ±5" and eq.equivalence.equivalent
    assert V.compare("x", mine, ref, "fid", margin=0.1).verdict.startswith("not shown equivalent")


def test_holm_adjusts_secondary_metrics_only():
    ref = seeded([10.0, 12.0, 11.0])
    primary = V.compare("x", seeded([10.5, 12.6, 11.4]), ref, "fid")  # p about 0.01: worse
    secondary = [V.compare("x", seeded([10.5, 12.6, 11.4], m), seeded([10.0, 12.0, 11.0], m), m)
                 for m in ("sfid", "fd_fmnist_proxy", "kid", "kid_fmnist_proxy")]
    assert primary.verdict == "worse" and all(v.verdict == "worse" for v in secondary)
    V.holm([primary, *secondary], primary="fid")
    assert primary.verdict == "worse" and primary.p_holm is None
    # four equal p-values of 0.013: Holm multiplies the smallest by 4 (0.052), the rest stay at that maximum
    assert all(v.p_holm == pytest.approx(4 * primary.p) for v in secondary) and 4 * primary.p > 0.05
    assert all(v.verdict == "no detectable difference (after Holm)" for v in secondary)
