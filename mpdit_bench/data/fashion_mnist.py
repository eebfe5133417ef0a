"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, padded to 32x32.

Padded to 32x32 it has the token geometry of an ImageNet-256 latent (p=4: 64 tokens, p=2: 256 tokens).
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
INSTALL_HINT = ("install it with `apt-get update && apt-get install -y dataset-fashion-mnist` "
                "(or run `make install`), or set MPDIT_FASHION_MNIST to a folder holding the idx .gz files")


class DatasetMissing(FileNotFoundError):
    pass


def data_root() -> Path:
    return Path(os.environ.get("MPDIT_FASHION_MNIST", DEFAULT_ROOT))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ValueError(f"{path}: not an idx file of unsigned bytes (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@lru_cache(maxsize=4)
def load_arrays(split: str = "train", pad_to: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, pad_to, pad_to), labels int64 (N,)) for ``split`` in {train, test}."""
    if split not in _FILES:
        raise ValueError(f"Fashion-MNIST split {split!r} is unknown; allowed: {', '.join(_FILES)}")
    root = data_root()
    paths = [root / name for name in _FILES[split]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetMissing(f"Fashion-MNIST not found ({', '.join(missing)}): {INSTALL_HINT}")
    images, labels = (_read_idx(p) for p in paths)
    pad = (pad_to - images.shape[-1]) // 2
    images = np.pad(images, ((0, 0), (pad, pad_to - images.shape[-1] - pad), (pad, pad_to - images.shape[-2] - pad)))
    return images, labels.astype(np.int64)


class FashionMNIST(torch.utils.data.Dataset):
    """Images as float (1, 32, 32) in [-1, 1] and integer labels in [0, 10)."""

    num_classes = 10
    channels = 1

    def __init__(self, split: str = "train", limit: int | None = None):
        images, labels = load_arrays(split)
        self.images, self.labels = images[:limit], labels[:limit]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i].astype(np.float32) / 127.5 - 1.0).unsqueeze(0)
        return x, int(self.labels[i])
