"""Latent extraction: encode an image folder once with a VAE into a latent store (``data/latents.py``'s
layout), under torchrun split over ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mpdit_bench.data.latents import (LABELS, LATENTS, STATS, STORE_DTYPES, LatentStoreError, center_crop,
                                      channel_stats, list_images, load_vae)
from mpdit_bench.engine import distributed
from mpdit_bench.files import write_text_atomic
from mpdit_bench.progress import ProgressBar


@torch.no_grad()
def extract_latents(images: str | Path, vae: str | Path, out: str | Path, resolution: int = 256,
                    batch_size: int = 32, device: str = "auto", sample_posterior: bool = True, seed: int = 0,
                    progress: bool = True, dtype: str = "float16") -> Path:
    """Encode every image once into one store; under torchrun rank r encodes images r, r + world, ...

    With ``sample_posterior`` each latent is mean + std * noise with noise seeded by (seed, image index),
    so the store does not depend on the number of ranks or the batch size; otherwise the posterior mean.
    ``dtype``: float16 (the suite's) or float32 (the MPDiT authors')."""
    if dtype not in STORE_DTYPES:
        raise LatentStoreError(f"--dtype {dtype}: allowed: {', '.join(STORE_DTYPES)}")
    out = Path(out)
    info = distributed.setup(device)
    try:
        model = load_vae(vae, info.device)
        factor = 2 ** (len(model.config.block_out_channels) - 1)
        if resolution % factor:
            raise LatentStoreError(f"--resolution {resolution}: allowed: a multiple of the VAE's downsampling {factor}")
        paths, labels, classes = list_images(images)
        shape = (len(paths), model.config.latent_channels, resolution // factor, resolution // factor)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / STATS).unlink(missing_ok=True)  # the store is complete only once stats.json exists again
            np.save(out / LABELS, labels)
            np.lib.format.open_memmap(out / LATENTS, mode="w+", dtype=np.dtype(dtype), shape=shape).flush()
        distributed.barrier()
        store = np.lib.format.open_memmap(out / LATENTS, mode="r+")
        mine = list(range(info.rank, len(paths), info.world_size))
        bar = ProgressBar("encode", len(mine), enabled=progress and info.is_main)
        for start in range(0, len(mine), batch_size):
            rows = mine[start:start + batch_size]
            pixels = np.stack([center_crop(Image.open(paths[i]), resolution) for i in rows])  # (B, H, W, 3)
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(info.device)
            posterior = model.encode(x).latent_dist
            z = posterior.mean
            if sample_posterior:
                noise = torch.stack([torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(seed * 10**9 + i))
                                     for i in rows]).to(z.device)
                z = z + posterior.std * noise
            store[rows] = z.float().cpu().numpy().astype(store.dtype)  # (B, C, h, w)
            bar.advance(len(rows))
        store.flush()
        bar.close()
        distributed.barrier()
        if info.is_main:
            mean, std = channel_stats(store)
            stats = {"mean": mean, "std": std, "num": len(paths), "resolution": resolution, "classes": classes,
                     "vae": str(vae), "downsample": factor, "sample_posterior": sample_posterior, "seed": seed,
                     "dtype": dtype, "crop": "ADM center crop"}
            write_text_atomic(out / STATS, json.dumps(stats, indent=2))
        distributed.barrier()
    finally:
        distributed.teardown()
    return out
