"""data.normalization (the store's statistics or the MPDiT authors' constants) and data.hflip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mpdit_bench.config import ConfigError
from mpdit_bench.data.latents import MPDIT_AUTHORS_MEAN, MPDIT_AUTHORS_STD, LatentStore, LatentStoreError
from mpdit_bench.engine.run_config import validate_run_config


def tiny_store(root, channels=4, num=4):
    root.mkdir()
    latents = np.arange(num * channels * 2 * 3, dtype=np.float16).reshape(num, channels, 2, 3)
    np.save(root / "latents.npy", latents)
    np.save(root / "labels.npy", np.zeros(num, dtype=np.int64))
    (root / "stats.json").write_text(json.dumps({"mean": [1.0] * channels, "std": [2.0] * channels,
                                                 "classes": ["a"]}))
    return latents


def test_the_authors_constants_replace_the_stores_statistics(tmp_path):
    raw = tiny_store(tmp_path / "s")
    store, authors = LatentStore(tmp_path / "s"), LatentStore(tmp_path / "s", normalization="mpdit_authors")
    z = torch.from_numpy(raw[1].astype(np.float32))
    torch.testing.assert_close(store[1][0], (z - 1.0) / 2.0, rtol=0, atol=1e-6)
    mean = torch.tensor(MPDIT_AUTHORS_MEAN).view(4, 1, 1)
    std = torch.tensor(MPDIT_AUTHORS_STD).view(4, 1, 1)
    torch.testing.assert_close(authors[1][0], (z - mean) / std, rtol=0, atol=1e-6)
    assert authors[1][0].dtype == torch.float32
    assert authors.mean_values == MPDIT_AUTHORS_MEAN and authors.std_values == MPDIT_AUTHORS_STD


def test_the_authors_constants_need_four_channels(tmp_path):
    tiny_store(tmp_path / "s", channels=1)
    with pytest.raises(LatentStoreError, match="4-channel"):
        LatentStore(tmp_path / "s", normalization="mpdit_authors")


def test_hflip_mirrors_about_half_of_the_items(tmp_path):
    raw = tiny_store(tmp_path / "s")
    store = LatentStore(tmp_path / "s", hflip=True)
    plain = (torch.from_numpy(raw[0].astype(np.float32)) - 1.0) / 2.0
    torch.manual_seed(0)
    items = [store[0][0] for _ in range(200)]
    assert all(torch.equal(x, plain) or torch.equal(x, plain.flip(-1)) for x in items)
    assert 60 < sum(bool(torch.equal(x, plain.flip(-1))) for x in items) < 140


def test_latent_keys_are_refused_on_images():
    base = {"model": "SiT-S/2", "train": {"steps": 1}}
    with pytest.raises(ConfigError, match="data.hflip"):
        validate_run_config({**base, "data": {"name": "fashion-mnist", "hflip": True}})
    with pytest.raises(ConfigError, match="data.normalization"):
        validate_run_config({**base, "data": {"name": "latents", "path": "x", "normalization": "sd"}})
