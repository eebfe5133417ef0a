"""The held-out flow-matching loss: a fixed grid, the loss it defines, identical for every call."""

import numpy as np
import pytest
import torch

from _data import needs_fashion_mnist

pytestmark = needs_fashion_mnist

from mpdit_bench.evaluation import heldout as H  # noqa: E402


class Zero(torch.nn.Module):
    """Predicts velocity 0: its loss per image is mean((n - x)^2) over the grid, computable by hand."""

    def forward(self, x, t, y):
        assert x.shape[1:] == (1, 32, 32) and t.shape == y.shape == (len(x),)
        return torch.zeros_like(x)


class Oracle(torch.nn.Module):
    """Knows the grid's noise: predicts n - x exactly, so its loss is 0 (the t values and noise line up)."""

    def __init__(self):
        super().__init__()
        self.x, _, self.t, self.noise = H.grid(8, 4)

    def forward(self, z_t, t, y):
        j = int(torch.argmin((self.t - t[0]).abs()))
        n = self.noise[: len(z_t), j]
        return n - (z_t - t[0] * n) / (1 - t[0])  # z_t = (1 - t) x + t n  ->  x


def test_grid_is_fixed_and_spans_zero_to_one():
    a, b = H.grid(8, 4), H.grid(8, 4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    t = a[2]
    assert torch.allclose(t, torch.tensor([0.125, 0.375, 0.625, 0.875])) and 0 < t.min() and t.max() < 1


def test_loss_of_a_known_model():
    x, _, _, noise = H.grid(8, 4)
    expected = ((noise - x[:, None]) ** 2).flatten(2).mean(2).mean(1).double().numpy()
    assert np.allclose(H.per_image_losses(Zero(), 1, 8, 4), expected, rtol=1e-6)
    assert H.per_image_losses(Oracle(), 1, 8, 4).max() < 1e-8
