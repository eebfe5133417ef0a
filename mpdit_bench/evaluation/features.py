"""Streaming feature extraction: Inception pool3 (FID, precision/recall, KID), sFID spatial features, IS logits.

Images go through in batches straight from the source; only the per-image feature vectors are kept
(pool3, logits), and the 2023-d sFID features are folded into running moments on the fly.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

import numpy as np
import torch

from mpdit_bench.evaluation.inception import build_extractor
from mpdit_bench.evaluation.metrics import Moments
from mpdit_bench.progress import ProgressBar

SFID_BLOCK = "Mixed_6d"  # ADM's mixed_6/conv: the 1x1 branch of the 4th 17x17 block
SFID_CHANNELS = 7        # 17 x 17 x 7 = 2023 values
MOMENT_KEYS = ("spatial",)


def spatial_features(branch_out: torch.Tensor) -> torch.Tensor:
    """Mixed_6d 1x1-branch output (after ReLU) (B, 192, 17, 17) -> first 7 channels in NHWC order (B, 2023)."""
    return branch_out[:, :SFID_CHANNELS].permute(0, 2, 3, 1).reshape(len(branch_out), -1)


class InceptionFeatures:
    """uint8 (B, H, W, 3) images -> {'pool3': (B, 2048), 'spatial': (B, 2023)[, 'logits': (B, 1008)]}.

    torch-fidelity's network does the TF-compatible bilinear resize to 299 and the (x - 128) / 128 scaling;
    logits are without the bias, as ADM's IS uses them, and only exist when the weights have a classifier.
    """

    def __init__(self, weights, device: str = "cpu", logits: bool = False, classifier: bool = False):
        if logits and not classifier:
            raise ValueError(f"Inception weights {weights} have no classifier layer: no logits, no Inception Score")
        self.logits = logits
        self.device = torch.device(device)
        self.net = build_extractor(weights, ("2048", "logits_unbiased") if logits else ("2048",), device)
        self._spatial = None
        getattr(self.net, SFID_BLOCK).branch1x1.register_forward_hook(self._keep_spatial)

    def _keep_spatial(self, module, inputs, output):
        self._spatial = spatial_features(output)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).to(self.device)  # (B, 3, H, W) uint8
        out = self.net(x)
        feats = {"pool3": out[0], "spatial": self._spatial}
        if self.logits:
            feats["logits"] = out[1]
        return {k: v.float().cpu().numpy() for k, v in feats.items()}


@functools.lru_cache(maxsize=2)
def shared_inception(weights, sha256: str, device: str, logits: bool, classifier: bool) -> InceptionFeatures:
    """One network per weights file (keyed by its content) and device, for a process that evaluates many
    runs (a sweep worker): building it costs 2-3 s on CPU."""
    return InceptionFeatures(weights, device, logits=logits, classifier=classifier)


def extract(batches: Iterable[np.ndarray], total: int, extractors: list[Callable[[np.ndarray], dict]],
            description: str = "features", progress: bool = True, moment_keys: tuple[str, ...] = MOMENT_KEYS) -> dict:
    """Run every extractor on every batch; keys in ``moment_keys`` become running (mu, sigma), the rest are
    stacked. The bootstrap passes ``moment_keys=()``: resampling needs every row; (mu, sigma) come beside them."""
    stacked: dict[str, list] = {}
    moments: dict[str, Moments] = {}
    with ProgressBar(description, total, enabled=progress, unit="img") as bar:
        for images in batches:
            for fn in extractors:
                for key, value in fn(images).items():
                    if key in moment_keys:
                        moments.setdefault(key, Moments()).update(value)
                    else:
                        stacked.setdefault(key, []).append(value)
            bar.advance(len(images))
    out = {k: np.concatenate(v) for k, v in stacked.items()}
    for key in set(MOMENT_KEYS) - set(moment_keys):
        if key in out and len(out[key]) >= 2:
            moments.setdefault(key, Moments()).update(out[key])
    for key, m in moments.items():
        if m.n >= 2:  # a covariance needs two vectors; callers report the metric as unavailable otherwise
            out[f"{key}_mu"], out[f"{key}_sigma"] = m.stats()
    return out
