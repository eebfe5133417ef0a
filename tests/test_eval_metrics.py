"""Frechet distance, Inception Score, precision/recall and KID on small known inputs."""

import numpy as np
import pytest
import scipy.linalg

from mpdit_bench.evaluation import metrics as M


def random_spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_closed_form_for_known_gaussians(method):
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert M.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]], method=method) == pytest.approx(4 + 1)
    # diagonal: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 1.0])
    mu1, mu2 = np.array([0.0, 1, 2, 3]), np.array([1.0, 1, 0, 3])
    expected = 1 + 4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method) == pytest.approx(expected)
    # commuting: S2 = c S1 -> Tr(S1) (1 - sqrt c)^2
    s = random_spd(16, 0)
    assert M.frechet_distance(np.zeros(16), s, np.zeros(16), 4 * s, method=method) == pytest.approx(np.trace(s))


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_against_scipy_reference(method):
    d = 32
    rng = np.random.default_rng(1)
    mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), random_spd(d, 2), random_spd(d, 3)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert M.frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_of_features_with_themselves_is_zero():
    x = np.random.default_rng(4).normal(size=(200, 24))
    for method in ("sqrtm", "eigh"):
        assert abs(M.frechet_distance(*M.gaussian_stats(x), *M.gaussian_stats(x), method=method)) < 1e-8


def test_frechet_distance_singular_covariances_stay_real_and_agree():
    x, y = np.random.default_rng(5).normal(size=(2, 10, 40))  # 10 samples in 40-d: rank-9 covariances
    a = M.frechet_distance(*M.gaussian_stats(x), *M.gaussian_stats(y))
    b = M.frechet_distance(*M.gaussian_stats(x), *M.gaussian_stats(y), method="eigh")
    assert np.isfinite(a) and isinstance(a, float) and a == pytest.approx(b, rel=1e-3)


def test_frechet_distance_grows_with_added_noise():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    fake = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    base = real[rng.permutation(400)]
    noise = rng.normal(size=base.shape)
    fds = [M.frechet_distance(*M.gaussian_stats(base + s * noise), *M.gaussian_stats(real)) for s in (0, 0.5, 1, 2, 4)]
    assert fds[0] < 1e-8 and all(a < b for a, b in zip(fds, fds[1:]))
    assert M.frechet_distance(*M.gaussian_stats(fake), *M.gaussian_stats(real)) > 1


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_moments_equal_numpy_covariance():
    x = np.random.default_rng(7).normal(size=(50, 5)) * 3 + 10
    m = M.Moments()
    for part in np.array_split(x, 4):
        m.update(part)
    mu, sigma = m.stats()
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def test_inception_score_limits_and_consecutive_splits():
    assert M.inception_score(np.zeros((20, 1008))) == pytest.approx(1.0)  # every prediction uniform
    confident = np.full((40, 1008), -30.0)
    confident[np.arange(40), np.arange(40) % 4] = 30.0  # four classes, interleaved
    assert M.inception_score(confident) == pytest.approx(4.0, rel=1e-6)
    ordered = confident[np.argsort(np.arange(40) % 4, kind="stable")]  # class 0 first, then 1, ...
    assert M.inception_score(ordered, split_size=10) == pytest.approx(1.0, rel=1e-6)  # each split one class
    assert M.inception_score(confident, split_size=8) == pytest.approx(4.0, rel=1e-6)  # 2 of each class per split


def brute_force_pr(real, fake, k):
    def radii(x):
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        return np.sort(d, axis=1)[:, k]  # index 0 is the point itself

    def inside(points, centres, r):
        d = ((points[:, None] - centres[None]) ** 2).sum(-1)
        return (d <= r[None]).any(1).mean()

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_matches_brute_force_and_limits():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(60, 5)), rng.normal(size=(50, 5)) * 0.8 + 0.8
    p, r = M.precision_recall(real, fake, k=3, batch_size=7)  # batches that do not divide the sizes
    bp, br = brute_force_pr(real, fake, 3)
    assert (p, r) == pytest.approx((bp, br)) and 0 < p < 1 and 0 < r < 1
    assert M.precision_recall(real, real) == (1.0, 1.0)
    assert M.precision_recall(real, real + 1000.0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k=3"):
        M.precision_recall(real[:3], fake)


def test_kid_near_zero_for_one_distribution_positive_for_two():
    rng = np.random.default_rng(9)
    a, b, c = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1.0
    same, _ = M.kernel_inception_distance(a, b, subsets=20, subset_size=100)
    diff, _ = M.kernel_inception_distance(a, c, subsets=20, subset_size=100)
    assert abs(same) < 0.05 < diff
    small, _ = M.kernel_inception_distance(a[:30], c[:40], subsets=5)  # subset size capped by the counts
    assert small > 0.05
