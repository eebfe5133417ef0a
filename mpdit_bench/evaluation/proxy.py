"""A CPU proxy for FID: a small Fashion-MNIST classifier, trained once with `RECIPE` and shipped.

The weights are part of the package (``assets/fmnist_proxy.safetensors``, 0.6 MB, SHA-256 pinned below,
made by ``scripts/make_proxy_weights.py``): trained on each machine, the classifier came out different
and the same samples scored differently.

Its 128-d penultimate features give Frechet distance, KID and precision/recall *proxies*, and its
predictions the class accuracy of conditional samples. These are never FID: every key says fmnist_proxy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mpdit_bench.engine.torch_settings import torch_settings
from mpdit_bench.files import sha256_file
from mpdit_bench.progress import ProgressBar

SHIPPED = Path(__file__).parent / "assets" / "fmnist_proxy.safetensors"
SHIPPED_SHA256 = "41e8165e53b29e9defc6b7236b8fd82f8cd43e1d2f77b9c014e7746c192fafa2"
RECIPE = {"version": 1, "arch": "conv16-32-64-fc128", "epochs": 2, "batch_size": 128, "lr": 2e-3, "seed": 0,
          "train_limit": None, "test_limit": None}
FEATURE_DIM = 128


class FmnistNet(nn.Module):
    """Three 3x3 conv + max-pool stages and a 128-d hidden layer: (B, 1, 32, 32) -> (B, 10)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1),
                                    nn.Conv2d(32, 64, 3, padding=1)])
        self.hidden = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)  # (B, C, H, W) -> (B, C', H/2, W/2)
        return F.relu(self.hidden(x.flatten(1)))  # (B, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (B, H, W) -> float (B, 1, 32, 32) in [-1, 1]: grey = channel mean, 28 px padded."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    if x.ndim == 4:
        x = x.mean(-1)
    x = x[:, None] / 127.5 - 1.0  # (B, 1, H, W)
    if x.shape[-1] == 28 and x.shape[-2] == 28:
        x = F.pad(x, (2, 2, 2, 2), value=-1.0)
    elif x.shape[-2:] != (32, 32):
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return x


def train_proxy(recipe: dict, progress: bool = True) -> tuple[dict, float]:
    """Train FmnistNet on Fashion-MNIST train; (state dict, test accuracy). Seeded, on one CPU thread: the
    reduction order (hence the weights) then does not depend on the machine's core count."""
    with torch_settings(threads=1):
        return _train(recipe, progress)


def _train(recipe: dict, progress: bool) -> tuple[dict, float]:
    from mpdit_bench.data.fashion_mnist import load_arrays

    images, labels = load_arrays("train")
    images, labels = images[:recipe["train_limit"]], labels[:recipe["train_limit"]]
    g = torch.Generator().manual_seed(recipe["seed"])
    torch.manual_seed(recipe["seed"])
    net = FmnistNet()
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    x_all, y_all = to_input(images), torch.from_numpy(labels)
    bs = recipe["batch_size"]
    steps = recipe["epochs"] * ((len(x_all) + bs - 1) // bs)
    with ProgressBar("training the Fashion-MNIST proxy", steps, enabled=progress, unit="steps") as bar:
        for _ in range(recipe["epochs"]):
            for idx in torch.randperm(len(x_all), generator=g).split(bs):
                loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.advance()
    net.eval()
    test_images, test_labels = (a[:recipe["test_limit"]] for a in load_arrays("test"))
    with torch.no_grad():
        pred = torch.cat([net(x).argmax(1) for x in to_input(test_images).split(1000)])
    accuracy = float((pred.numpy() == test_labels).mean())
    return net.state_dict(), accuracy


class ProxyWeightsError(RuntimeError):
    """The shipped proxy weights are missing or are not the pinned file."""


def proxy_weights() -> tuple[str, str]:
    """(path, sha256) of the shipped proxy classifier, checked against the pinned hash: every machine
    scores the same samples with the same weights."""
    if not SHIPPED.is_file():
        raise ProxyWeightsError(f"{SHIPPED} is missing: reinstall mpdit-bench (it ships the proxy's weights)")
    sha = sha256_file(SHIPPED)
    if sha != SHIPPED_SHA256:
        raise ProxyWeightsError(f"{SHIPPED} has SHA-256 {sha}, not the pinned {SHIPPED_SHA256}: "
                                "reinstall mpdit-bench, or rebuild with scripts/make_proxy_weights.py and pin it")
    return str(SHIPPED), sha


def load_proxy(path: str | Path) -> FmnistNet:
    from safetensors.torch import load_file  # tensors only: nothing in the file is executed

    net = FmnistNet()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


class ProxyFeatures:
    """uint8 (B, H, W, 3) -> {'proxy': (B, 128) penultimate features, 'proxy_pred': (B,) predicted class}."""

    def __init__(self, device: str = "cpu"):
        self.path, self.sha256 = proxy_weights()
        self.device = torch.device(device)
        self.net = load_proxy(self.path).to(self.device)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        h = self.net.features(to_input(images).to(self.device))
        return {"proxy": h.cpu().numpy(), "proxy_pred": self.net.head(h).argmax(1).cpu().numpy()}
