"""The sources' samplers on velocity fields with closed-form solutions: dopri5 and heun2 (torchdiffeq), the
SBDM SDE with its noise off, and Euler over the MPDiT authors' grid of points."""

from __future__ import annotations

import math

import pytest
import torch

from mpdit_bench.config import ConfigError
from mpdit_bench.engine import sampling

RATE = 0.7  # v(x, t) = RATE * x + t: linear, so x(t) has a closed form


def affine_velocity(calls: list | None = None):
    def v(x, t, y):
        if calls is not None:
            calls.append(t)
        return RATE * x + t
    return v


def affine_solution_at_zero(x1: torch.Tensor) -> torch.Tensor:
    """dx/dt = a x + t from x(1) = x1 to t = 0: x(t) = C e^{a t} - t / a - 1 / a^2."""
    a = RATE
    c = (x1 + 1 / a + 1 / a ** 2) * math.exp(-a)
    return c - 1 / a ** 2


def test_dopri5_reaches_the_closed_form_solution():
    x1 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.long)
    out = sampling.dopri5(affine_velocity(), x1, y, steps=1, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(out, affine_solution_at_zero(x1), atol=1e-6, rtol=0)


def test_dopri5_tolerances_bound_its_error_and_change_its_work():
    x1 = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    loose, tight = [], []
    out_loose = sampling.dopri5(affine_velocity(loose), x1, y, 1, atol=1e-3, rtol=1e-3)
    sampling.dopri5(affine_velocity(tight), x1, y, 1, atol=1e-10, rtol=1e-10)
    assert len(tight) > len(loose)
    assert (out_loose - affine_solution_at_zero(x1)).abs().max() < 1e-2  # within a few loose tolerances


def points_case(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x(1) and labels for 5 grid points (4 steps of h = 0.25) of the affine field."""
    x1 = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x1, torch.zeros(2, dtype=torch.long)


def by_hand(x1: torch.Tensor, step) -> torch.Tensor:
    """``step(x, t, h)`` from t = 1 over linspace(1, 0, 5), written out."""
    x, h = x1.clone(), 0.25
    for k in range(4):
        x = step(x, 1 - k * h, h)
    return x


def heun_step(x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    d = RATE * x + t
    return x - h * 0.5 * (d + RATE * (x - h * d) + (t - h))


def test_heun2_over_points_is_heuns_method_by_hand_with_two_calls_per_step():
    """PPFlow's ODE default: torchdiffeq's heun2 over linspace of N points, N - 1 steps, 2 calls each."""
    x1, y = points_case(3)
    calls: list[float] = []
    out = sampling.heun2(affine_velocity(calls), x1, y, 5, grid="points")
    assert len(calls) == 8
    torch.testing.assert_close(out, by_hand(x1, heun_step), atol=1e-12, rtol=0)
    fine = sampling.heun2(affine_velocity(), x1, y, 250, grid="points")
    torch.testing.assert_close(fine, affine_solution_at_zero(x1), atol=1e-5, rtol=0)  # second order in h
    torch.testing.assert_close(sampling.heun(affine_velocity(), x1, y, 5, grid="points"), out, atol=1e-12, rtol=0)


def test_euler_over_points_takes_steps_minus_one_steps():
    """The MPDiT authors' linspace(1, 0, N): N - 1 Euler steps, computed here by hand."""
    x1, y = points_case(2)
    calls: list[float] = []
    out = sampling.euler(affine_velocity(calls), x1, y, 5, grid="points")
    assert len(calls) == 4
    torch.testing.assert_close(out, by_hand(x1, lambda x, t, h: x - h * (RATE * x + t)), atol=1e-12, rtol=0)
    assert len(sampling.time_grid(250, "points")) - 1 == 249
    assert len(sampling.time_grid(250)) - 1 == 250


def test_sbdm_sde_without_noise_is_its_drift_by_hand():
    """diffusion_norm 0 leaves Euler on 0.96 -> 0.04 and the last step to 0; with noise the drift gains the
    score term w s with w = t / (1 - t), checked against a hand-computed first step."""
    x0 = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    calls: list[float] = []
    out = sampling.sbdm_sde(affine_velocity(calls), x0, y, 4, generators=[], diffusion_norm=0.0, grid="points")
    assert calls[0] == pytest.approx(0.96) and calls[-1] == pytest.approx(0.04) and len(calls) == 4
    x = x0.clone()
    ts = [0.96, 0.96 - 0.92 / 3, 0.96 - 2 * 0.92 / 3, 0.04]
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = x + (t_next - t) * (RATE * x + t)
    x = x - 0.04 * (RATE * x + 0.04)
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)


def test_sbdm_sde_first_noisy_step_by_hand():
    x0 = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    gens = [torch.Generator().manual_seed(9)]
    out = sampling.sbdm_sde(affine_velocity(), x0, y, 2, generators=gens, diffusion_norm=1.0, grid="points")
    xi = torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(9)).double()
    t, dt = 0.96, -0.92
    v = RATE * x0 + t
    w = t / (1 - t)
    score = -(x0 + (1 - t) * v) / t
    x = x0 + dt * (v - w * score) + math.sqrt(2 * w * abs(dt)) * xi
    t = 0.04
    v = RATE * x + t
    x = x - t * (v - (t / (1 - t)) * (-(x + (1 - t) * v) / t))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)  # the noise is drawn in float32


def test_sbdm_sde_keeps_the_marginals_of_a_gaussian():
    """Data N(0, 1): the exact velocity is v = (x (2t - 1) ... ) - here v(x, t) = x (2t - 1) / (t^2 + (1-t)^2)
    + ... reduces to v = (t - (1 - t)) x / (t^2 + (1 - t)^2) for z ~ N(0, 1); the SDE must end near N(0, 1)."""
    def v(x, t, y):
        return (t - (1 - t)) * x / (t ** 2 + (1 - t) ** 2)
    n = 4000  # standard errors: mean 0.016, std 0.011; the tolerance 0.05 is 3 of the mean's
    x = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = x * math.sqrt(0.96 ** 2 + 0.04 ** 2)  # the state at t = 0.96
    gens = [torch.Generator().manual_seed(100 + i) for i in range(n)]
    out = sampling.sbdm_sde(v, x, torch.zeros(n, dtype=torch.long), 200, generators=gens, grid="points")
    assert abs(out.std().item() - 1.0) < 0.05 and abs(out.mean().item()) < 0.05


def test_points_grid_needs_two_points():
    with pytest.raises(ConfigError, match="steps"):
        sampling.check_options({"grid": "points", "steps": 1})
    with pytest.raises(ConfigError, match="sampler"):
        sampling.check_options({"sampler": "dpm"})
    assert sampling.check_options({"sampler": "dopri5"})["atol"] == pytest.approx(1e-6)


def test_sample_flags_not_given_leave_the_checkpoints_sampling_defaults(tmp_path, monkeypatch):
    """`mpdit-bench sample` without --sampler/--steps/--grid samples as the checkpoint's run config says
    (an imported PPFlow file: heun2 over points)."""
    from mpdit_bench import checkpoint
    from mpdit_bench.imports.export import random_suite_model
    from mpdit_bench.models import model_config

    cfg = model_config("SiT-S/2", hidden_size=32, num_heads=2, depths=[1], in_channels=1, num_classes=10,
                       input_size=8)
    ckpt = {"format": checkpoint.FORMAT, "step": 0, "model": random_suite_model(cfg).state_dict(),
            "model_config": cfg.to_dict(), "run_config": {"sample": {"sampler": "heun2", "grid": "points",
                                                                     "steps": 3}},
            "data_info": {"name": "fashion-mnist", "channels": 1, "size": 8, "num_classes": 10}}
    checkpoint.save_atomic(ckpt, tmp_path / "c.pt")
    seen = []
    real = sampling.INTEGRATORS["heun2"]
    monkeypatch.setitem(sampling.INTEGRATORS, "heun2", lambda *a, **k: seen.append((a[3], k["grid"])) or real(*a, **k))
    sampling.sample_checkpoint(tmp_path / "c.pt", 2, tmp_path / "s.npz", device="cpu", progress=False,
                               sampler=None, steps=None, grid=None)
    assert seen == [(3, "points")]
    seen.clear()
    sampling.sample_checkpoint(tmp_path / "c.pt", 2, tmp_path / "t.npz", device="cpu", progress=False, steps=5)
    assert seen == [(5, "points")]
