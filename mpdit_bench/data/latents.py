"""A pre-extracted latent store: one file of latents, one of labels, and per-channel statistics.

    STORE/latents.npy   float16 or float32 (N, C, h, w), read as a memory map (never loaded whole)
    STORE/labels.npy    int64 (N,)
    STORE/stats.json    {"mean": [C], "std": [C], "num", "resolution", "classes", "vae", ...}
                        written last: its presence marks a complete store

The dataset normalises per channel, (z - mean) / std, as MPDiT does in place of SD's x0.18215, in float32.
``normalization`` says with which statistics: ``store`` (the suite's: measured on this store, stats.json) or
``mpdit_authors`` (the MPDiT authors' fixed constants for sd-vae-ft-ema latents of ImageNet).
``hflip`` mirrors each latent left-right with probability 1/2: SiT's and PPFlow's random horizontal flip,
moved from the image to its latent (the VAE is close to flip-equivariant; an exact flip needs flipped images
encoded at extraction).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

LATENTS, LABELS, STATS = "latents.npy", "labels.npy", "stats.json"
MPDIT_AUTHORS_MEAN = [5.81, 3.25, 0.12, -2.15]  # their train.py / sample.py constants, sd-vae-ft-ema latents
MPDIT_AUTHORS_STD = [4.17, 4.62, 3.71, 3.28]
NORMALIZATIONS = ("store", "mpdit_authors")
# float16: the suite's (half the disk: 10.5 GB for ImageNet-256); float32: as the MPDiT authors keep their features
STORE_DTYPES = ("float16", "float32")


class LatentStoreError(FileNotFoundError):
    pass


def read_stats(root: str | Path) -> dict:
    root = Path(root)
    for name in (LATENTS, LABELS, STATS):
        if not (root / name).is_file():
            raise LatentStoreError(
                f"{root / name}: missing; a latent store (data.path) needs {LATENTS}, {LABELS} and {STATS}, "
                f"written by `mpdit-bench extract-latents --images DIR --vae PATH --out {root}`")
    stats = json.loads((root / STATS).read_text())
    for key in ("mean", "std", "classes"):
        if key not in stats:
            raise LatentStoreError(f"{root / STATS}: key {key!r} missing; allowed: a stats file written by extract-latents")
    return stats


def check_store_dtype(root: str | Path, required: str | None) -> str:
    """The dtype the store keeps; a store of another dtype than ``required`` (data.store_dtype) is refused."""
    dtype = str(np.load(Path(root) / LATENTS, mmap_mode="r").dtype)
    if required is not None and dtype != required:
        raise LatentStoreError(f"{Path(root) / LATENTS}: {dtype} latents, but data.store_dtype is {required}; "
                               f"allowed: a store written by `mpdit-bench extract-latents --dtype {required}`, or "
                               "data.store_dtype null (any)")
    return dtype


class LatentStore(torch.utils.data.Dataset):
    """Normalised latents (C, h, w) float32 and integer labels; ``indices`` selects a subset."""

    def __init__(self, root: str | Path, indices: np.ndarray | None = None, normalization: str = "store",
                 hflip: bool = False):
        self.root = Path(root)
        self.stats = read_stats(self.root)
        self.latents = np.load(self.root / LATENTS, mmap_mode="r")
        self.labels = np.load(self.root / LABELS)
        if len(self.latents) != len(self.labels):
            raise LatentStoreError(f"{self.root}: {len(self.latents)} latents but {len(self.labels)} labels")
        self.indices = np.arange(len(self.labels)) if indices is None else np.asarray(indices)
        c = self.latents.shape[1]
        mean, std = channel_normalization(self.stats, normalization, c, self.root)
        self.mean_values, self.std_values = mean, std  # as given: what sampling undoes
        self.mean = torch.tensor(mean, dtype=torch.float32).view(c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(c, 1, 1)
        self.hflip = hflip
        self.channels, self.size = c, self.latents.shape[-1]
        self.num_classes = len(self.stats["classes"])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        z = torch.from_numpy(np.array(self.latents[j], dtype=np.float32))
        if self.hflip and torch.rand(()) < 0.5:
            z = z.flip(-1)
        return (z - self.mean) / self.std, int(self.labels[j])


def channel_normalization(stats: dict, normalization: str, channels: int, root: Path) -> tuple[list[float], list[float]]:
    """(mean, std) per channel: the store's own, or the MPDiT authors' constants (4-channel latents only)."""
    if normalization == "store":
        return list(stats["mean"]), list(stats["std"])
    if normalization == "mpdit_authors":
        if channels != len(MPDIT_AUTHORS_MEAN):
            raise LatentStoreError(f"{root}: data.normalization mpdit_authors is for {len(MPDIT_AUTHORS_MEAN)}-channel "
                                   f"sd-vae latents; this store has {channels} channels; allowed: store")
        return list(MPDIT_AUTHORS_MEAN), list(MPDIT_AUTHORS_STD)
    raise LatentStoreError(f"data.normalization {normalization!r}; allowed: {', '.join(NORMALIZATIONS)}")


# ---- images to latents: the folder layout, ADM's crop, the VAE (engine/extract.py runs them) -------------
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def list_images(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Images under root/<class>/..., labels by sorted class folder name (ImageNet's train layout)."""
    root = Path(root)
    if not root.is_dir():
        raise LatentStoreError(f"--images {root}: no such directory; allowed: a folder of class sub-folders of images")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise LatentStoreError(f"--images {root}: no images found in class sub-folders "
                               f"(suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, np.asarray(labels, dtype=np.int64), classes


def center_crop(image, size: int) -> np.ndarray:
    """ADM's preprocessing: halve with a box filter while the short side is >= 2 size, resize the short
    side to ``size`` (bicubic), take the central size x size square. Returns uint8 (size, size, 3)."""
    from PIL import Image

    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize((image.size[0] // 2, image.size[1] // 2), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


def load_vae(path: str | Path, device: torch.device):
    """A diffusers AutoencoderKL from a local folder (nothing is downloaded)."""
    from diffusers import AutoencoderKL

    if not Path(path).is_dir():
        raise LatentStoreError(f"--vae {path}: no such directory; allowed: a local AutoencoderKL folder "
                               "(save_pretrained layout, e.g. a copy of sd-vae-ft-ema)")
    try:
        vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:  # no config.json or weights in the folder, or another model's
        raise LatentStoreError(f"--vae {path}: not an AutoencoderKL folder ({type(err).__name__}: {err}); allowed: "
                               "a local AutoencoderKL folder (save_pretrained layout, e.g. a copy of sd-vae-ft-ema)") from None
    return vae.to(device).eval()


def channel_stats(latents: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over all latents and positions (float64 running sums)."""
    c = latents.shape[1]
    total, sq, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(latents), chunk):
        block = np.asarray(latents[start:start + chunk], dtype=np.float64)
        total += block.sum(axis=(0, 2, 3))
        sq += (block ** 2).sum(axis=(0, 2, 3))
        count += block.shape[0] * block.shape[2] * block.shape[3]
    mean = total / count
    return mean.tolist(), np.sqrt(np.maximum(sq / count - mean ** 2, 1e-12)).tolist()
