"""The Fashion-MNIST proxy: seeded training, cache by recipe, proxy metrics named as proxies."""

import numpy as np
import pytest
import torch

from mpdit_bench.data.fashion_mnist import DatasetMissing, load_arrays
from mpdit_bench.evaluation import evaluate, proxy, write_npz

TINY = dict(proxy.RECIPE, epochs=1, train_limit=2000, test_limit=500, batch_size=32, lr=3e-3)

try:
    load_arrays("test")
    HAVE_DATA = True
except DatasetMissing:
    HAVE_DATA = False
pytestmark = pytest.mark.skipif(not HAVE_DATA, reason="dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """One cache (and one tiny proxy training) for the whole module."""
    folder = tmp_path_factory.mktemp("proxy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPDIT_CACHE", str(folder / "cache"))
        mp.setattr(proxy, "RECIPE", TINY)
        yield folder


def test_training_is_deterministic_and_cached(tiny_cache, monkeypatch):
    path, sha = proxy.proxy_weights(progress=False)  # trains and caches
    assert f"fmnist-proxy-{proxy.recipe_hash(TINY)}" in path
    again, acc = proxy.train_proxy(TINY, progress=False)
    cached = torch.load(path, weights_only=True)
    assert all(torch.equal(again[k], cached[k]) for k in cached)  # same seed, same weights
    assert acc > 0.5  # learned something from 2000 images (chance is 0.1)
    monkeypatch.setattr(proxy, "train_proxy", lambda *a, **k: pytest.fail("retrained despite the cache"))
    assert proxy.proxy_weights(progress=False) == (path, sha)


def test_input_conversion():
    grey = np.zeros((2, 28, 28), np.uint8)
    x = proxy.to_input(grey)
    assert x.shape == (2, 1, 32, 32) and x.min() == -1 and x.max() == -1
    rgb = np.full((1, 64, 64, 3), 255, np.uint8)
    assert proxy.to_input(rgb).shape == (1, 1, 32, 32) and torch.allclose(proxy.to_input(rgb), torch.ones(1))


@pytest.mark.slow
def test_proxy_metrics_grow_with_noise_and_class_accuracy(tiny_cache):
    images, labels = load_arrays("test")
    images, labels = images[:200], labels[:200]
    rng = np.random.default_rng(0)
    noise = rng.normal(size=images.shape)
    fds = []
    for sigma in (0, 30, 60, 120):
        noised = np.clip(images + sigma * noise, 0, 255).astype(np.uint8)
        path = write_npz(tiny_cache / f"n{sigma}.npz", noised, labels)
        out = evaluate(path, "fashion-mnist:test:200", metrics="proxy", progress=False, kid_subsets=10)
        fds.append(out["fd_fmnist_proxy"])
        if sigma == 0:
            assert abs(out["fd_fmnist_proxy"]) < 1e-6 and out["precision_fmnist_proxy"] == 1.0
            assert out["class_accuracy_fmnist_proxy"] > 0.5
            assert out["fid"] is None and out["inception_weights_sha256"] is None and out["proxy_weights_sha256"]
    assert all(a < b for a, b in zip(fds, fds[1:])), fds
    shuffled = write_npz(tiny_cache / "wrong.npz", images, (labels + 1) % 10)
    out = evaluate(shuffled, "fashion-mnist:test:200", metrics="proxy", progress=False, kid_subsets=10)
    assert out["class_accuracy_fmnist_proxy"] < 0.3
    unlabelled = write_npz(tiny_cache / "nolabels.npz", images)
    out = evaluate(unlabelled, "fashion-mnist:test:200", metrics="proxy", progress=False, kid_subsets=10)
    assert out["class_accuracy_fmnist_proxy"] is None and out["kid_fmnist_proxy"] is not None


def test_cli_evaluate_prints_one_json_object(tiny_cache):
    import json

    from typer.testing import CliRunner

    from mpdit_bench.cli import app

    images, labels = load_arrays("test")
    path = write_npz(tiny_cache / "cli.npz", images[:40], labels[:40])
    result = CliRunner().invoke(app, ["evaluate", str(path), "--ref", "fashion-mnist:test:40", "--metrics", "proxy",
                                      "--json", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["num_samples"] == 40 and abs(out["fd_fmnist_proxy"]) < 1e-3 and out["fid"] is None  # 40 < 128: singular
    bad = CliRunner().invoke(app, ["evaluate", str(path), "--ref", "fashion-mnist:test:40", "--metrics", "fidd"])
    assert bad.exit_code == 2 and "allowed: fid" in bad.output
