"""Image sources for evaluation: ADM .npz, an image folder, a built-in dataset, or an ADM reference batch.

Every source yields uint8 (B, H, W, 3) batches (greyscale repeated to 3 channels), streamed so that a
50k-image .npz is never held in memory, and has a content hash that keys the reference-statistics cache.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from mpdit_bench.files import save_npz_atomic, sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DATASETS = ("fashion-mnist:train", "fashion-mnist:test")
STATS_KEYS = ("mu", "sigma", "mu_s", "sigma_s")
POOL3_DIM, SPATIAL_DIM = 2048, 2023  # Inception pool3; sFID's 7 channels of Mixed_6d (17x17x7)
STATS_DIMS = {"mu": (POOL3_DIM, "Inception pool3"), "mu_s": (SPATIAL_DIM, "sFID's 17x17x7 spatial features")}
SPEC_HELP = ("an ADM .npz (arr_0 uint8 (N, H, W[, C])), an image folder, or a dataset name "
             f"({', '.join(DATASETS)}, optionally :N for the first N images, e.g. fashion-mnist:test:500)")


class SourceError(ValueError):
    pass


def to_rgb(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 (B, H, W) / (B, H, W, 1) / (B, H, W, 3) -> (B, H, W, 3)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise SourceError(f"{where}: images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3); got {images.shape}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


@dataclass
class Source:
    """A sequence of images (or only stored statistics) and how to read them in batches."""

    name: str
    num: int                                 # images that can be read (0 for a statistics-only reference)
    labels: Optional[np.ndarray] = None      # int64 (num,) class labels when the source has them (arr_1)
    stats: dict = field(default_factory=dict)  # ADM reference batch: mu, sigma, mu_s, sigma_s
    _reader: object = None
    _hasher: object = None

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """uint8 (B, H, W, 3) batches in order."""
        if self.num:
            yield from self._reader(batch_size)

    def content_hash(self) -> str:
        if not hasattr(self, "_hash"):
            self._hash = self._hasher()
        return self._hash


# --- ADM .npz ----------------------------------------------------------------------------------------------

def _npy_header(f) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def _npz_array_info(path: Path, key: str) -> tuple[tuple, np.dtype]:
    with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
        shape, fortran, dtype = _npy_header(f)
    if fortran:
        raise SourceError(f"{path}: key {key} is stored in Fortran order; allowed: C order (np.savez default)")
    return shape, dtype


def _npz_reader(path: Path, shape: tuple, key: str = "arr_0"):
    """Reads ``key`` from the zip member in sequential chunks: memory stays one batch whatever N is."""
    per_image = int(np.prod(shape[1:]))

    def read(batch_size: int) -> Iterator[np.ndarray]:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            _npy_header(f)
            for start in range(0, shape[0], batch_size):
                n = min(batch_size, shape[0] - start)
                raw = f.read(n * per_image)
                if len(raw) != n * per_image:
                    raise SourceError(f"{path}: {key} is truncated at image {start}")
                yield to_rgb(np.frombuffer(raw, np.uint8).reshape((n,) + tuple(shape[1:])), str(path))
    return read


def open_npz(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as z:
            keys = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    except zipfile.BadZipFile as err:
        raise SourceError(f"{path}: not an .npz file ({err})") from err
    stats = {}
    if set(STATS_KEYS[:2]) <= keys:  # an ADM reference batch
        with np.load(path, allow_pickle=False) as data:
            stats = {k: data[k].astype(np.float64) for k in STATS_KEYS if k in keys}
        check_reference_stats(stats, path)
    if "arr_0" not in keys:
        if stats:
            return Source(str(path), 0, stats=stats, _hasher=lambda: sha256_file(path))
        raise SourceError(f"{path}: no key arr_0 (keys: {sorted(keys)}); allowed: arr_0 images, or mu and sigma")
    shape, dtype = _npz_array_info(path, "arr_0")
    if dtype != np.uint8 or len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)):
        raise SourceError(f"{path}: key arr_0 is {dtype} {shape}; allowed: uint8 (N, H, W), (N, H, W, 1) or "
                          "(N, H, W, 3), values 0..255 in NHWC order")
    labels = None
    if "arr_1" in keys:
        with np.load(path, allow_pickle=False) as data:
            labels = data["arr_1"]
        if labels.shape != (shape[0],) or labels.dtype.kind not in "iu":
            raise SourceError(f"{path}: key arr_1 is {labels.dtype} {labels.shape}; allowed: integer labels ({shape[0]},)")
        labels = labels.astype(np.int64)
    return Source(str(path), int(shape[0]), labels, stats, _npz_reader(path, shape), lambda: sha256_file(path))


def check_reference_stats(stats: dict[str, np.ndarray], path: Path) -> None:
    """An ADM reference batch's statistics have the shapes of the features they describe: mu (2048,) and
    sigma (2048, 2048); mu_s (2023,) and sigma_s (2023, 2023) where given. Checked when the file is opened,
    so that a wrong batch is refused before any sample's features are extracted."""
    if ("mu_s" in stats) != ("sigma_s" in stats):
        raise SourceError(f"{path}: has {'mu_s' if 'mu_s' in stats else 'sigma_s'} without "
                          f"{'sigma_s' if 'mu_s' in stats else 'mu_s'}; allowed: both (sFID) or neither")
    for mu_key, sigma_key in (("mu", "sigma"), ("mu_s", "sigma_s")):
        if mu_key not in stats:
            continue
        dim, features = STATS_DIMS[mu_key]
        mu, sigma = stats[mu_key], stats[sigma_key]
        if mu.shape != (dim,) or sigma.shape != (dim, dim):
            raise SourceError(f"{path}: {mu_key} {mu.shape} / {sigma_key} {sigma.shape} are invalid; allowed: "
                              f"({dim},) / ({dim}, {dim}), the statistics of {features}")


def write_npz(path: str | Path, images: np.ndarray, labels: Optional[np.ndarray] = None) -> Path:
    """ADM's layout, atomically: arr_0 uint8 (N, H, W, 3) (greyscale repeated), arr_1 int64 labels."""
    path = Path(path)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise SourceError(f"{path}: images must be uint8 0..255, got {images.dtype}")
    arrays = {"arr_0": to_rgb(images, str(path))}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise SourceError(f"{path}: labels must be ({len(images)},), got {labels.shape}")
        arrays["arr_1"] = labels.astype(np.int64)
    return save_npz_atomic(path, **arrays)


# --- image folder --------------------------------------------------------------------------------------------

def open_folder(path: Path) -> Source:
    from PIL import Image

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SourceError(f"{path}: no images (allowed suffixes: {', '.join(IMAGE_SUFFIXES)})")
    with Image.open(files[0]) as im:
        size = im.size

    def read(batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(files), batch_size):
            batch = []
            for p in files[start:start + batch_size]:
                with Image.open(p) as im:
                    if im.size != size:
                        raise SourceError(f"{p}: size {im.size} differs from {files[0].name}'s {size}; "
                                          "allowed: one size for all images")
                    batch.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            yield np.stack(batch)

    def content_hash() -> str:
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(bytes.fromhex(sha256_file(p)))
        return h.hexdigest()

    return Source(str(path), len(files), _reader=read, _hasher=content_hash)


# --- built-in datasets ---------------------------------------------------------------------------------------

def parse_dataset(spec: str) -> tuple[str, Optional[int]]:
    """(split, first N images or None) of a dataset name such as 'fashion-mnist:test:500'."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or ":".join(parts[:2]) not in DATASETS:
        raise SourceError(f"dataset {spec!r} is unknown; allowed: {', '.join(DATASETS)} (optionally :N)")
    limit = None
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise SourceError(f"dataset {spec!r}: the count {parts[2]!r} must be a positive integer")
        limit = int(parts[2])
    return parts[1], limit


def open_dataset(spec: str) -> Source:
    """'fashion-mnist:train', 'fashion-mnist:test' or either with ':N' (first N images), padded to 32x32."""
    from mpdit_bench.data.fashion_mnist import load_arrays

    split, limit = parse_dataset(spec)
    images, labels = load_arrays(split)
    images, labels = images[:limit], labels[:limit]

    def read(batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(images), batch_size):
            yield to_rgb(images[start:start + batch_size], spec)

    def content_hash() -> str:
        h = hashlib.sha256(f"{images.shape}".encode())
        h.update(np.ascontiguousarray(images).tobytes())
        return h.hexdigest()

    return Source(spec, len(images), labels, _reader=read, _hasher=content_hash)


def names_dataset(text: str) -> bool:
    return text.split(":")[0] in {d.split(":")[0] for d in DATASETS} and not Path(text).exists()


def check_spec(spec: str | Path) -> None:
    """The form of a SAMPLES / REF argument, without reading any data: a dataset name must parse and a file
    must be an .npz. A path that does not exist here passes (`open_source` refuses it when opened)."""
    text = str(spec)
    if names_dataset(text):
        parse_dataset(text)
        return
    path = Path(text)
    if not path.is_dir() and path.suffix != ".npz" and (path.is_file() or path.suffix):
        raise SourceError(f"{path}: unsupported file type {path.suffix!r}; expected {SPEC_HELP}")


def open_source(spec: str | Path) -> Source:
    """Any SAMPLES / REF argument -> Source; bad input fails here, before any compute."""
    text = str(spec)
    if names_dataset(text):
        return open_dataset(text)
    path = Path(text)
    if path.is_dir():
        return open_folder(path)
    if path.is_file():
        if path.suffix != ".npz":
            raise SourceError(f"{path}: unsupported file type {path.suffix!r}; expected {SPEC_HELP}")
        return open_npz(path)
    raise SourceError(f"{text!r} does not exist; expected {SPEC_HELP}")
