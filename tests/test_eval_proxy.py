"""The Fashion-MNIST proxy: shipped pinned weights, their recipe, proxy metrics named as proxies."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _data import needs_fashion_mnist
from mpdit_bench.data.fashion_mnist import load_arrays
from mpdit_bench.evaluation import evaluate, proxy, write_npz

pytestmark = needs_fashion_mnist


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """One reference-feature cache for the whole module."""
    folder = tmp_path_factory.mktemp("proxy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPDIT_CACHE", str(folder / "cache"))
        yield folder


def test_shipped_weights_are_pinned_small_and_load_safely():
    path, sha = proxy.proxy_weights()
    assert sha == proxy.SHIPPED_SHA256 and Path(path).stat().st_size < 1_000_000
    from safetensors import safe_open

    with safe_open(path, "pt") as f:  # the recipe that made them travels in the file
        meta = f.metadata()
    assert json.loads(meta["recipe"]) == proxy.RECIPE and float(meta["test_accuracy"]) > 0.85


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(proxy.SHIPPED.read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(proxy, "SHIPPED", bad)
    with pytest.raises(proxy.ProxyWeightsError, match="pinned"):
        proxy.proxy_weights()


def test_same_samples_same_features_for_any_thread_count():
    """The shipped weights, not a training run, define the proxy: the features of fixed images agree across
    thread counts (to float rounding), so the proxy FD of the same samples agrees across machines."""
    images = load_arrays("test")[0][:64]
    net = proxy.load_proxy(proxy.SHIPPED)
    feats = []
    for threads in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                feats.append(net.features(proxy.to_input(images)).numpy())
        finally:
            torch.set_num_threads(before)
    assert np.allclose(feats[0], feats[1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_recipe_reproduces_the_shipped_accuracy():
    """The recipe that made the shipped file retrains to about its test accuracy (bit-identity across
    machines is not claimed: that is why the weights ship)."""
    from safetensors import safe_open

    _, accuracy = proxy.train_proxy(proxy.RECIPE, progress=False)
    with safe_open(str(proxy.SHIPPED), "pt") as f:
        shipped = float(f.metadata()["test_accuracy"])
    assert abs(accuracy - shipped) < 0.02


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


def test_cli_evaluate_prints_one_json_object(tiny_cache, monkeypatch, capsys):
    import json
    import sys

    from typer.testing import CliRunner

    from mpdit_bench.cli import app, main

    images, labels = load_arrays("test")
    path = write_npz(tiny_cache / "cli.npz", images[:40], labels[:40])
    result = CliRunner().invoke(app, ["evaluate", str(path), "--ref", "fashion-mnist:test:40", "--metrics", "proxy",
                                      "--json", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["num_samples"] == 40 and abs(out["fd_fmnist_proxy"]) < 1e-3 and out["fid"] is None  # 40 < 128: singular
    # the installed command's entry point: bad input of any command is reported, not a traceback
    monkeypatch.setattr(sys, "argv", ["mpdit-bench", "evaluate", str(path), "--ref", "fashion-mnist:test:40",
                                      "--metrics", "fidd"])
    with pytest.raises(SystemExit) as bad:
        main()
    assert bad.value.code == 2 and "'--metrics' = 'fidd'" in capsys.readouterr().err
