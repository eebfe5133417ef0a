"""Seeded random InceptionV3 weights: the evaluation's network with its real shapes, for machines where the
converted real weights are absent (the GPU check then still compares device and CPU features)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch


def seeded_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """A torch-fidelity InceptionV3 state dict with seeded random weights at ``path``: He-normal convolutions,
    identity batch norms, and a NaN classifier (the features never reach it)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _LayersOnly(FeatureExtractorInceptionV3):
        def load_state_dict(self, *_: Any, **__: Any) -> None:  # the constructor loads a file; there is none yet
            return None

    path = Path(path)
    torch.save({}, path)
    net = _LayersOnly("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif key.endswith("bn.weight") or key.endswith("bn.running_var"):
            state[key] = torch.ones_like(value)
        elif key.startswith("fc."):
            state[key] = torch.full_like(value, float("nan"))
        else:
            state[key] = torch.zeros_like(value)
    torch.save(state, path)
    return path


__all__ = ["seeded_inception_weights"]
