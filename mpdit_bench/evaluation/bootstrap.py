"""95 % intervals for every metric of one evaluation, by resampling the features already extracted.

No image goes through a network again: each replicate draws the generated samples' indices with
replacement (and the reference's, where the reference is a sample set rather than fixed statistics) and
recomputes the metric from those rows. The indices come from a fixed seed, so two evaluations with the
same sample count and reference are resampled at the same indices: runs sampled with one sampling seed
share noise and label per sample index, and the difference of their replicates is a paired bootstrap.

Interval: the point estimate plus the centred bootstrap quantiles, ``theta + q(theta* - mean theta*)``.
It measures the sampling spread of the N-sample estimate. It does not remove the estimate's bias (FID
from N samples is biased upward by an amount depending on N), so compare runs at equal N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from mpdit_bench.engine.torch_settings import torch_settings
from mpdit_bench.evaluation import metrics as M
from mpdit_bench.evaluation.metric_table import clip

LEVEL = 0.95
SEED = 20240601
MEMBERS = 32  # balls kept per point for precision / recall; all 32 dropped by a resample: p = e^-32


@dataclass
class Draws:
    """Resampling counts: how often each generated sample / reference row appears in each replicate."""

    samples: np.ndarray            # (B, N) int
    reference: Optional[np.ndarray]  # (B, M) int, None when the reference is held fixed

    @classmethod
    def make(cls, replicates: int, n: int, m: Optional[int], seed: int = SEED) -> "Draws":
        rng = np.random.default_rng(seed)
        samples = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates)
        reference = None if m is None else rng.multinomial(m, np.full(m, 1.0 / m), size=replicates)
        return cls(samples, reference)

    @property
    def replicates(self) -> int:
        return len(self.samples)


def centred_interval(point: float, replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(low, high): the point estimate plus the quantiles of the replicates about their mean."""
    reps = np.asarray(replicates, dtype=np.float64)
    centred = reps - reps.mean()
    alpha = (1 - level) / 2
    return point + np.quantile(centred, alpha), point + np.quantile(centred, 1 - alpha)


def interval(point: float, replicates: np.ndarray, metric: str, level: float = LEVEL) -> list[float]:
    """[low, high]: `centred_interval` of the finite replicates, clipped to the metric's range (a distance
    is >= 0, a fraction in [0, 1]: `metric_table`)."""
    reps = np.asarray(replicates, dtype=np.float64)
    low, high = centred_interval(point, reps[np.isfinite(reps)], level)
    low, high = clip(metric, low, high)
    return [float(low), float(high)]


def _weighted_stats(x: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of the rows of ``x`` repeated ``counts`` times, without copying them."""
    n = counts.sum()
    w = counts.astype(x.dtype)
    mu = w @ x / n
    centred = x - mu
    return mu, (centred * w[:, None]).T @ centred / (n - 1)


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    lam, vec = np.linalg.eigh(sigma)
    return (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T


def one_thread():
    """Small matrices in a tight loop: one thread. On shared cores, multi-threaded BLAS / LAPACK calls on
    them spin-waited: a 63 x 316 SVD took 0.2 s through numpy, 7 ms through torch on one thread."""
    return torch_settings(threads=1)


class GramFrechet:
    """The Frechet distance of re-counted rows through Gram matrices, for sets with fewer rows than
    dimensions: after one O((N + M)^2 D) set-up each replicate costs O(N^2 + N M + M^2) and an N x M
    singular value (or N x N eigenvalue) problem, and is exact (the low-rank form of
    `metrics.frechet_distance_rows`, centred algebraically instead of copying the rows)."""

    def __init__(self, x: np.ndarray, ref_x: Optional[np.ndarray] = None,
                 ref_stats: Optional[tuple[np.ndarray, np.ndarray]] = None):
        t = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
        x = t(x)
        shift = x.mean(0) if ref_x is None else t(ref_x).mean(0)  # FD is shift-invariant: better conditioned
        x = x - shift
        self.kxx, self.kyy = x @ x.T, None
        if ref_x is not None:
            y = t(ref_x) - shift
            self.kyy, self.kxy = y @ y.T, x @ y.T
        else:
            mu2, sigma2 = t(ref_stats[0]) - shift, t(ref_stats[1])
            self.p, self.x_mu2 = x @ sigma2 @ x.T, x @ mu2
            self.mu2_sq, self.trace2 = float(mu2 @ mu2), float(torch.trace(sigma2))

    @staticmethod
    def _centred(k: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        """(A - 1 w1^T A)(B - 1 w2^T B)^T from K = A B^T: the rows of each side minus their weighted mean."""
        return k - (k @ w2)[:, None] - (w1 @ k)[None, :] + w1 @ k @ w2

    def __call__(self, c1: np.ndarray, c2: Optional[np.ndarray] = None) -> float:
        c1 = torch.as_tensor(np.asarray(c1, np.float64))
        n = c1.sum()
        w1, keep1 = c1 / n, c1 > 0
        s1 = torch.sqrt(c1[keep1] / (n - 1))
        trace1 = float((c1 * torch.diagonal(self._centred(self.kxx, w1, w1))).sum() / (n - 1))
        if self.kyy is None:
            inner = self._centred(self.p, w1, w1)[keep1][:, keep1] * s1[:, None] * s1[None, :]
            cross = float(torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum())
            diff_sq = float(w1 @ self.kxx @ w1 - 2 * w1 @ self.x_mu2) + self.mu2_sq
            return diff_sq + trace1 + self.trace2 - 2 * cross
        c2 = torch.ones(len(self.kyy), dtype=torch.float64) if c2 is None else torch.as_tensor(np.asarray(c2, np.float64))
        m = c2.sum()
        w2, keep2 = c2 / m, c2 > 0
        s2 = torch.sqrt(c2[keep2] / (m - 1))
        trace2 = float((c2 * torch.diagonal(self._centred(self.kyy, w2, w2))).sum() / (m - 1))
        cross_m = self._centred(self.kxy, w1, w2)[keep1][:, keep2] * s1[:, None] * s2[None, :]
        cross = float(torch.linalg.svdvals(cross_m).sum())
        diff_sq = float(w1 @ self.kxx @ w1 + w2 @ self.kyy @ w2 - 2 * w1 @ self.kxy @ w2)
        return diff_sq + trace1 + trace2 - 2 * cross


class Blocks:
    """Per-block row sums and outer products of a large feature set, its rows split into ``blocks`` blocks
    in a fixed random order: a replicate that re-counts whole blocks gets its mean and covariance in
    blocks x D^2 instead of N x D^2 multiply-adds. For i.i.d. rows, resampling random blocks gives the
    mean and covariance the same first-order spread as resampling rows."""

    def __init__(self, x: np.ndarray, shift: np.ndarray, blocks: int):
        parts = np.array_split(np.random.default_rng(SEED).permutation(len(x)), blocks)
        self.rows = np.array([len(part) for part in parts], np.float64)
        centred = [np.asarray(x[part], np.float64) - shift for part in parts]  # shifted: no cancellation
        self.sums = np.stack([c.sum(0) for c in centred])
        self.outer = np.stack([c.T @ c for c in centred])

    def stats(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = counts @ self.rows
        mu = counts @ self.sums / n
        return mu, (np.tensordot(counts, self.outer, 1) - n * np.outer(mu, mu)) / (n - 1)


BLOCKS, BLOCK_ROWS = 50, 10_000  # from 10k rows on, FD replicates re-count 50 blocks of rows


def _block_counts(replicates: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multinomial(BLOCKS, np.full(BLOCKS, 1.0 / BLOCKS), size=replicates)


def frechet_replicates(x: np.ndarray, draws: Draws, ref_x: Optional[np.ndarray] = None,
                       ref_stats: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """Frechet distance per replicate. The reference is ``ref_x`` (resampled when ``draws.reference`` is
    given) or fixed statistics ``ref_stats`` = (mu, sigma). Below D rows on a side: `GramFrechet`; from
    BLOCK_ROWS rows: `Blocks` re-counted; else the rows re-counted. With a fixed reference its square
    root is computed once and each replicate costs one D x D eigenvalue problem."""
    dim = np.shape(x)[1]
    resample_ref = ref_x is not None and draws.reference is not None
    if len(x) <= dim or (ref_x is not None and len(ref_x) <= dim):
        gram = GramFrechet(x, ref_x, ref_stats)
        with one_thread():
            return np.array([gram(draws.samples[b], draws.reference[b] if resample_ref else None)
                             for b in range(draws.replicates)])
    shift = np.asarray(x[: min(len(x), 1000)], np.float64).mean(0)  # FD is shift-invariant

    def side(rows: np.ndarray, counts: np.ndarray, seed: int):
        if len(rows) < BLOCK_ROWS:
            rows = np.asarray(rows, np.float64) - shift
            return lambda b: _weighted_stats(rows, counts[b])
        blocks, block_counts = Blocks(rows, shift, BLOCKS), _block_counts(len(counts), seed)
        return lambda b: blocks.stats(block_counts[b])

    sample_stats = side(x, draws.samples, SEED + 2)
    if resample_ref:
        ref_side = side(ref_x, draws.reference, SEED + 3)
    else:
        mu_r, sigma_r = ref_stats if ref_stats is not None else M.gaussian_stats(ref_x)
        mu_r = np.asarray(mu_r, np.float64) - shift
        root_r, trace_r = _sqrt_psd(np.asarray(sigma_r, np.float64)), float(np.trace(sigma_r))
    out = np.empty(draws.replicates)
    for b in range(draws.replicates):
        mu, sigma = sample_stats(b)
        if resample_ref:
            out[b] = M.frechet_distance(mu, sigma, *ref_side(b), method="eigh")
            continue
        diff = mu - mu_r
        inner = np.linalg.eigvalsh(root_r @ sigma @ root_r)
        out[b] = diff @ diff + np.trace(sigma) + trace_r - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    return out


REPLICATE_SUBSETS = 10
KERNEL_CACHE_ROWS = 8000  # up to this many rows per side the kernel matrices are computed once (<= 0.5 GB)


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's cubic kernel (a b^T / d + 1)^3, as torch-fidelity's."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 of one subset pair, as torch-fidelity's kernel_mmd."""
    m = len(kxx)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def kid_replicates(x: np.ndarray, ref_x: np.ndarray, draws: Draws, subsets: int, subset_size: int) -> np.ndarray:
    """KID per replicate: the subset estimator (subsets of min(subset_size, N, M) rows without replacement)
    on the resampled rows, a new subset draw each, with at most ``REPLICATE_SUBSETS`` subsets: their extra
    subset noise widens the interval a little (conservative). Kernel matrices are computed once where they fit."""
    subsets = min(subsets, REPLICATE_SUBSETS)
    x, ref_x = np.asarray(x, np.float64), np.asarray(ref_x, np.float64)
    size = min(subset_size, len(x), len(ref_x))
    cached = len(x) <= KERNEL_CACHE_ROWS and len(ref_x) <= KERNEL_CACHE_ROWS
    if cached:
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(ref_x, ref_x), _poly_kernel(x, ref_x)
    rng = np.random.default_rng(SEED + 1)
    out = np.empty(draws.replicates)
    for b in range(draws.replicates):
        rows = np.repeat(np.arange(len(x)), draws.samples[b])
        ref_rows = (np.repeat(np.arange(len(ref_x)), draws.reference[b]) if draws.reference is not None
                    else np.arange(len(ref_x)))
        total = 0.0
        for _ in range(subsets):
            i = rows[rng.choice(len(rows), size, replace=False)]
            j = ref_rows[rng.choice(len(ref_rows), size, replace=False)]
            if cached:
                total += _mmd(kxx[np.ix_(i, i)], kyy[np.ix_(j, j)], kxy[np.ix_(i, j)])
            else:
                total += _mmd(_poly_kernel(x[i], x[i]), _poly_kernel(ref_x[j], ref_x[j]), _poly_kernel(x[i], ref_x[j]))
        out[b] = total / subsets
    return out


def _members(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor,
             batch_size: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """For each point, up to MEMBERS indices of the balls (centre, radius) containing it, and which are real."""
    keep = min(MEMBERS, len(centres))
    idx, valid = [], []
    for rows in points.split(batch_size):
        inside = (M._sq_distances(rows, centres) <= radii[None]).double()
        top = torch.topk(inside, keep, dim=1)
        idx.append(top.indices)
        valid.append(top.values > 0)
    return torch.cat(idx), torch.cat(valid)


def coverage_replicates(points: np.ndarray, centres: np.ndarray, k: int, point_counts: np.ndarray,
                        centre_counts: Optional[np.ndarray]) -> np.ndarray:
    """Fraction of resampled points inside a ball of a resampled centre, per replicate (precision: points =
    generated, centres = reference; recall: the other way). Radii are the k-NN radii of the full sets: a
    resample duplicates points, and a duplicate at distance 0 would shrink a re-estimated radius."""
    p = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    c = torch.as_tensor(np.asarray(centres), dtype=torch.float64)
    idx, valid = _members(p, c, M.knn_radii(c, k))
    idx, valid = idx.numpy(), valid.numpy()
    out = np.empty(len(point_counts))
    for b in range(len(point_counts)):
        present = valid if centre_counts is None else valid & (centre_counts[b][idx] > 0)
        inside = present.any(1)
        out[b] = (point_counts[b] * inside).sum() / point_counts[b].sum()
    return out


def mean_replicates(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of a per-sample quantity (e.g. correct class) per replicate."""
    return counts @ np.asarray(values, np.float64) / counts.sum(1)


def inception_score_replicates(logits: np.ndarray, counts: np.ndarray, split_size: int) -> np.ndarray:
    return np.array([M.inception_score(np.repeat(logits, c, axis=0), split_size) for c in counts])


def add_intervals(out: dict, replicates: dict[str, np.ndarray], n: int) -> None:
    """``<metric>_ci95`` beside each metric that has replicates, ``bootstrap`` = N, and the replicates
    themselves (``bootstrap_replicates``, 6 significant digits) for differences between evaluations."""
    out["bootstrap"] = n
    out["bootstrap_replicates"] = {}
    for metric, reps in replicates.items():
        if out.get(metric) is None:
            continue
        out[f"{metric}_ci95"] = interval(out[metric], reps, metric)
        out["bootstrap_replicates"][metric] = [float(f"{v:.6g}") for v in np.asarray(reps, np.float64)]
