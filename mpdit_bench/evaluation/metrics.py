"""The metrics of ADM's evaluator on feature arrays: Frechet distance, Inception Score, precision/recall, KID."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch


class Moments:
    """Running mean and covariance of feature batches (float64), so sFID features need not be kept."""

    def __init__(self):
        self.n, self.sum, self.outer = 0, None, None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)  # (B, D)
        if self.sum is None:
            self.sum, self.outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        self.n += len(x)
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu (D,), sigma (D, D)) with the unbiased covariance, as np.cov(rowvar=False)."""
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.n}")
        mu = self.sum / self.n
        sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, sigma


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)): S1 S2 is similar to that symmetric PSD matrix."""
    lam, vec = np.linalg.eigh(sigma1)
    root1 = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(np.sqrt(np.clip(inner, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2).

    method 'sqrtm' is ADM's: scipy's sqrtm of S1 S2. Singular products (fewer samples than dimensions) can
    give a non-finite or complex root: then the diagonals are offset by eps, and a remaining imaginary
    part above 1e-3 is an error, not a number. method 'eigh' uses the symmetric form S1^1/2 S2 S1^1/2
    (the same value for covariance matrices, never complex, and more accurate when they are singular).
    """
    if method not in ("sqrtm", "eigh"):
        raise ValueError(f"Frechet distance method {method!r} is unknown; allowed: sqrtm, eigh")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"statistics disagree in shape: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    if method == "eigh":
        return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * _trace_sqrt_product(sigma1, sigma2))

    def root(a, b):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on singular input; we check the result instead
            return scipy.linalg.sqrtm(a @ b)

    covmean = root(sigma1, sigma2)
    if not np.isfinite(covmean).all() or (np.iscomplexobj(covmean) and np.abs(np.diagonal(covmean).imag).max() > 1e-3):
        offset = np.eye(len(mu1)) * eps
        covmean = root(sigma1 + offset, sigma2 + offset)
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise ValueError(f"Frechet distance: matrix square root has imaginary component {imag:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def centred_rows(x: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, A) with sigma = A^T A exactly: rows (x_i - mu) sqrt(c_i / (n - 1)), c = how often row i is
    counted (1 each by default; a bootstrap resample's counts otherwise)."""
    x = np.asarray(x, np.float64)
    c = np.ones(len(x)) if counts is None else np.asarray(counts, np.float64)
    n = c.sum()
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {n:g}")
    mu = c @ x / n
    return mu, (x - mu) * np.sqrt(c / (n - 1))[:, None]


def frechet_distance_rows(mu1: np.ndarray, rows1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray | None = None,
                          rows2: np.ndarray | None = None) -> float:
    """The Frechet distance when sigma1 = A1^T A1 has fewer rows than dimensions (N < D: singular).

    The non-zero eigenvalues of S1 S2 are those of A1 S2 A1^T (N x N), or, with S2 = A2^T A2 too, the
    squared singular values of A1 A2^T (N x M): Tr((S1 S2)^1/2) is their root sum, exact, in N D^2 (or
    N M D) multiply-adds instead of a D x D matrix square root of a singular product.
    """
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    trace1 = float((rows1 * rows1).sum())
    if rows2 is not None:
        trace2 = float((rows2 * rows2).sum())
        cross = float(np.linalg.svd(rows1 @ rows2.T, compute_uv=False).sum())
    else:
        trace2 = float(np.trace(sigma2))
        cross = float(np.sqrt(np.clip(np.linalg.eigvalsh(rows1 @ sigma2 @ rows1.T), 0, None)).sum())
    return float(diff @ diff + trace1 + trace2 - 2 * cross)


def inception_score(logits: np.ndarray, split_size: int = 5000) -> float:
    """ADM: softmax of the bias-free logits, mean over consecutive splits of exp(E KL(p(y|x) || p(y)))."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    probs = torch.softmax(logits, dim=1)  # (N, 1008)
    scores = []
    for part in probs.split(split_size):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (torch.log(part.clamp_min(1e-30)) - torch.log(marginal))).sum(1)
        scores.append(float(torch.exp(kl.mean())))
    return float(np.mean(scores))


def _sq_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (A, D), (B, D) -> (A, B), as ADM's DistanceBlock."""
    return ((a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)[None]).clamp_min(0)


def knn_radii(features: torch.Tensor, k: int = 3, batch_size: int = 2000) -> torch.Tensor:
    """Squared distance of each point to its k-th nearest other point (itself, at 0, is skipped)."""
    if len(features) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} feature vectors, got {len(features)}")
    radii = [torch.kthvalue(_sq_distances(rows, features), k + 1, dim=1).values for rows in features.split(batch_size)]
    return torch.cat(radii)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch_size: int) -> float:
    """Fraction of points inside at least one ball (centre, radius)."""
    inside = [(_sq_distances(rows, centres) <= radii[None]).any(1) for rows in points.split(batch_size)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, batch_size: int = 2000) -> tuple[float, float]:
    """ADM's manifold estimator (Kynkaanniemi et al.): precision = fake inside the real manifold, recall = vice versa."""
    real = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    precision = _coverage(fake, real, knn_radii(real, k, batch_size), batch_size)
    recall = _coverage(real, fake, knn_radii(fake, k, batch_size), batch_size)
    return precision, recall


def kernel_inception_distance(features_1: np.ndarray, features_2: np.ndarray, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """KID (cubic polynomial kernel MMD^2, unbiased) through torch-fidelity, subset size capped by the sample counts."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, len(features_1), len(features_2))
    if size < 2:
        raise ValueError(f"KID needs at least 2 feature vectors on each side, got {len(features_1)} and {len(features_2)}")
    out = kid_features_to_metric(torch.as_tensor(np.asarray(features_1, np.float64)),
                                 torch.as_tensor(np.asarray(features_2, np.float64)),
                                 kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]
