"""A CPU proxy for FID: a small Fashion-MNIST classifier trained once (seeded) and cached.

Its 128-d penultimate features give Frechet distance, KID and precision/recall *proxies*, and its
predictions the class accuracy of conditional samples. These are never FID: every key says fmnist_proxy.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mpdit_bench.evaluation.inception import cache_dir
from mpdit_bench.files import save_torch_atomic, sha256_file

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


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def train_proxy(recipe: dict, progress: bool = True) -> tuple[dict, float]:
    """Train FmnistNet on Fashion-MNIST train; (state dict, test accuracy). Seeded, on one CPU thread: the
    reduction order (hence the weights) then does not depend on the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(recipe, progress)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: dict, progress: bool) -> tuple[dict, float]:
    from mpdit_bench.data.fashion_mnist import load_arrays
    from mpdit_bench.evaluation.features import progress_bar

    images, labels = load_arrays("train")
    images, labels = images[:recipe["train_limit"]], labels[:recipe["train_limit"]]
    g = torch.Generator().manual_seed(recipe["seed"])
    torch.manual_seed(recipe["seed"])
    net = FmnistNet()
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    x_all, y_all = to_input(images), torch.from_numpy(labels)
    bs = recipe["batch_size"]
    steps = recipe["epochs"] * ((len(x_all) + bs - 1) // bs)
    with progress_bar(progress, unit="steps") as bar:
        task = bar.add_task("training the Fashion-MNIST proxy", total=steps)
        for _ in range(recipe["epochs"]):
            for idx in torch.randperm(len(x_all), generator=g).split(bs):
                loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.advance(task)
    net.eval()
    test_images, test_labels = (a[:recipe["test_limit"]] for a in load_arrays("test"))
    with torch.no_grad():
        pred = torch.cat([net(x).argmax(1) for x in to_input(test_images).split(1000)])
    accuracy = float((pred.numpy() == test_labels).mean())
    return net.state_dict(), accuracy


def proxy_weights(recipe: dict | None = None, progress: bool = True) -> tuple[str, str]:
    """(path, sha256) of the cached proxy classifier, trained on first use. Keyed by the recipe's hash."""
    recipe = recipe or RECIPE
    folder = cache_dir() / "proxy"
    path = folder / f"fmnist-proxy-{recipe_hash(recipe)}.pt"
    if not path.is_file():
        state, accuracy = train_proxy(recipe, progress)
        meta = folder / f"{path.stem}.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"recipe": recipe, "test_accuracy": accuracy}, indent=2))
        save_torch_atomic(state, path)
    return str(path), sha256_file(path)


class ProxyFeatures:
    """uint8 (B, H, W, 3) -> {'proxy': (B, 128) penultimate features, 'proxy_pred': (B,) predicted class}."""

    def __init__(self, device: str = "cpu", recipe: dict | None = None, progress: bool = True):
        self.path, self.sha256 = proxy_weights(recipe or RECIPE, progress)
        self.device = torch.device(device)
        self.net = FmnistNet()
        self.net.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=True))
        self.net.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        h = self.net.features(to_input(images).to(self.device))
        return {"proxy": h.cpu().numpy(), "proxy_pred": self.net.head(h).argmax(1).cpu().numpy()}
