import math

import numpy as np
import pytest
import torch

from _tiny import tiny_run
from mpdit_bench.engine import sampling
from mpdit_bench.config import ConfigError
from mpdit_bench.models import create_model
from mpdit_bench.engine.train import train

torch.set_num_threads(1)
OPTS = sampling.check_options({"steps": 4, "batch_size": 3, "seed": 11})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("MPDiT-B", hidden_size=32, num_heads=2, depths=[1, 1], patch_sizes=[8, 4], class_tokens=2,
                     in_channels=1, num_classes=10, input_size=32).eval()
    with torch.no_grad():  # the zero-initialised final layer would make every velocity 0
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return m


def _sample(model, indices, labels, **opts):
    return sampling.sample_indices(model, model.cfg, indices, labels, {**OPTS, **opts}, torch.device("cpu"))


@pytest.mark.parametrize("name", sampling.SAMPLERS)
def test_shapes_and_seed_determinism(model, name):
    labels = torch.tensor([0, 3, 9, 10, 2])  # 10 = the null class
    a = _sample(model, range(5), labels, sampler=name, cfg_scale=2.0)
    assert a.shape == (5, 1, 32, 32) and torch.isfinite(a).all()
    assert torch.equal(a, _sample(model, range(5), labels, sampler=name, cfg_scale=2.0))
    assert not torch.allclose(a, _sample(model, range(5), labels, sampler=name, cfg_scale=2.0, seed=12))


def test_samples_do_not_depend_on_batch_size_or_sharding(model):
    labels = torch.arange(6) % 10
    whole = _sample(model, range(6), labels, sampler="sde", batch_size=6)
    small = _sample(model, range(6), labels, sampler="sde", batch_size=2)
    assert torch.allclose(whole, small, atol=1e-5)
    odd = _sample(model, [1, 3, 5], labels[[1, 3, 5]], sampler="sde", batch_size=2)  # rank 1 of 2
    assert torch.allclose(odd, whole[[1, 3, 5]], atol=1e-5)


def test_cfg_scale_one_equals_the_conditional_model(model):
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([1, 2, 3, 4])
    v = sampling.guided_velocity(model, 1, 10, cfg_scale=1.0)
    with torch.no_grad():
        cond = model(x, torch.full((4,), 0.3), y)
        assert torch.equal(v(x, 0.3, y), cond)
        # the guided path (cond and null in one batch) at a scale barely above 1 is the conditional model
        near = sampling.guided_velocity(model, 1, 10, cfg_scale=1.0 + 1e-9)(x, 0.3, y)
        assert torch.allclose(near, cond, atol=1e-5)
    conditional_only = sampling.sample_indices(
        model, model.cfg, range(4), y, {**OPTS, "cfg_scale": 1.0}, torch.device("cpu"))
    gens = [sampling.sample_generator(OPTS["seed"], i) for i in range(4)]
    x1 = torch.stack([torch.randn(1, 32, 32, generator=g) for g in gens])
    with torch.no_grad():
        manual = sampling.euler(lambda z, t, lab: model(z, torch.full((4,), t), lab), x1, y, OPTS["steps"])
    assert torch.allclose(conditional_only, manual, atol=1e-6)


def test_cfg_combines_cond_and_null_and_respects_interval(model):
    x, y = torch.randn(3, 1, 32, 32), torch.tensor([1, 5, 7])
    with torch.no_grad():
        cond = model(x, torch.full((3,), 0.6), y)
        null = model(x, torch.full((3,), 0.6), torch.full((3,), 10))
        guided = sampling.guided_velocity(model, 1, 10, cfg_scale=3.0)(x, 0.6, y)
        assert torch.allclose(guided, null + 3.0 * (cond - null), atol=1e-5)
        outside = sampling.guided_velocity(model, 1, 10, cfg_scale=3.0, interval=(0.0, 0.5))(x, 0.6, y)
        assert torch.equal(outside, cond)
        inside = sampling.guided_velocity(model, 1, 10, cfg_scale=3.0, interval=(0.5, 0.7))(x, 0.6, y)
        assert torch.allclose(inside, guided, atol=1e-6)


def test_integrators_on_known_fields():
    x1, y = torch.randn(5, 1, 2, 2), torch.zeros(5, dtype=torch.long)
    c = torch.randn(1, 1, 2, 2)
    assert torch.allclose(sampling.euler(lambda x, t, _: c.expand_as(x), x1, y, 7), x1 - c, atol=1e-6)
    exact = x1 * math.exp(-1)  # dx/dt = x from t = 1 to 0
    err_euler = (sampling.euler(lambda x, t, _: x, x1, y, 10) - exact).abs().max()
    err_heun = (sampling.heun(lambda x, t, _: x, x1, y, 10) - exact).abs().max()
    assert err_heun < err_euler / 10


@pytest.mark.parametrize("name", ["euler", "sde"])
def test_samplers_recover_a_gaussian_with_the_exact_velocity(name):
    """For data N(mu, s^2) the optimal velocity is known in closed form; ODE and SDE must map noise to the data law."""
    mu, s, n = 1.5, 0.5, 3000

    def v(x, t, _):
        var = (1 - t) ** 2 * s**2 + t**2
        return -mu + (t - (1 - t) * s**2) / var * (x - (1 - t) * mu)

    gens = [sampling.sample_generator(0, i) for i in range(n)]
    x1 = torch.stack([torch.randn(1, 1, 1, generator=g) for g in gens]).double()
    out = sampling.INTEGRATORS[name](v, x1, torch.zeros(n), 100, generators=gens)
    assert abs(out.mean().item() - mu) < 0.05 and abs(out.std().item() - s) < 0.05


def test_to_uint8_adm_layout():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    img = sampling.to_uint8(x)
    assert img.shape == (1, 2, 2, 3) and img.dtype == np.uint8
    assert img[0, :, :, 0].tolist() == [[0, 128], [255, 255]] and (img[..., 0] == img[..., 2]).all()


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="sampler"):
        sampling.check_options({"sampler": "ddim"})
    with pytest.raises(ConfigError, match="guidance_interval"):
        sampling.check_options({"guidance_interval": [0.8, 0.2]})
    with pytest.raises(ConfigError, match="one of"):
        sampling.check_options({"cfg": 2})


def test_sample_checkpoint_writes_adm_npz_and_grid(tmp_path):
    train(tiny_run(steps=2), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    out = sampling.sample_checkpoint(ckpt, 7, tmp_path / "s.npz", steps=3, cfg_scale=2.0, batch_size=4,
                                     labels="balanced", progress=False)
    with np.load(out) as f:
        assert f["arr_0"].shape == (7, 32, 32, 3) and f["arr_0"].dtype == np.uint8
        assert f["arr_1"].tolist() == [0, 1, 2, 3, 4, 5, 6]
        first = f["arr_0"].copy()
    assert out.with_suffix(".png").is_file()
    again = sampling.sample_checkpoint(ckpt, 7, tmp_path / "t.npz", steps=3, cfg_scale=2.0, batch_size=7,
                                       labels="balanced", progress=False)
    with np.load(again) as f:
        assert np.array_equal(f["arr_0"], first)
    with pytest.raises(ConfigError, match="npz"):
        sampling.sample_checkpoint(ckpt, 2, tmp_path / "s.png")
