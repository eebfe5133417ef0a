import json

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny import tiny_run
from mpdit_bench.data import latents
from mpdit_bench.engine.extract import extract_latents
from mpdit_bench.engine.sampling import sample_checkpoint
from mpdit_bench.engine.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                        norm_num_groups=8, sample_size=32)
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "fox"]):
        (root / name).mkdir()
        for i, size in enumerate([(40, 52), (70, 64), (33, 33)]):
            arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_adm_center_crop():
    img = Image.fromarray(np.arange(100 * 60 * 3, dtype=np.uint8).reshape(60, 100, 3) % 251)
    out = latents.center_crop(img, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    plain = np.zeros((40, 80, 3), np.uint8)
    plain[:, 30:50] = 255  # a bright central band stays central
    crop = latents.center_crop(Image.fromarray(plain), 16)
    assert crop[:, 8].mean() > 200 and crop[:, 0].mean() < 50


def test_extract_train_and_decode_end_to_end(tmp_path, tiny_vae, image_folder):
    store = extract_latents(image_folder, tiny_vae, tmp_path / "store", resolution=32, batch_size=4,
                            device="cpu", progress=False)
    z = np.load(store / "latents.npy", mmap_mode="r")
    assert z.shape == (9, 4, 16, 16) and z.dtype == np.float16  # one file for all images, f = 2
    assert np.load(store / "labels.npy").tolist() == [0] * 3 + [1] * 3 + [2] * 3
    stats = json.loads((store / "stats.json").read_text())
    assert stats["classes"] == ["cat", "dog", "fox"] and stats["num"] == 9
    assert np.allclose(stats["mean"], z.astype(np.float64).mean(axis=(0, 2, 3)), atol=1e-4)
    assert np.allclose(stats["std"], z.astype(np.float64).std(axis=(0, 2, 3)), atol=1e-4)
    again = extract_latents(image_folder, tiny_vae, tmp_path / "again", resolution=32, batch_size=9,
                            device="cpu", progress=False)
    # per-image seeds: the store does not depend on the batch (up to float16 rounding of conv sums)
    assert np.allclose(np.load(again / "latents.npy"), np.asarray(z), atol=2e-3, rtol=2e-3)

    ds = latents.LatentStore(store)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-3)  # normalised per channel

    cfg = tiny_run(steps=2, global_batch=4)
    cfg["data"] = {"name": "latents", "path": str(store)}
    cfg["model_overrides"]["patch_sizes"] = [4, 2]
    train(cfg, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    out = sample_checkpoint(ckpt, 3, tmp_path / "s.npz", vae=tiny_vae, steps=2, progress=False)
    with np.load(out) as f:
        assert f["arr_0"].shape == (3, 32, 32, 3) and f["arr_0"].dtype == np.uint8  # decoded to pixels
        assert f["arr_1"].max() < 3


def test_missing_inputs_are_named(tmp_path, tiny_vae):
    with pytest.raises(latents.LatentStoreError, match="--images"):
        extract_latents(tmp_path / "nope", tiny_vae, tmp_path / "o", 32, device="cpu", progress=False)
    with pytest.raises(latents.LatentStoreError, match="--vae"):
        extract_latents(tmp_path, tmp_path / "novae", tmp_path / "o", 32, device="cpu", progress=False)
    with pytest.raises(latents.LatentStoreError, match="stats.json"):
        latents.LatentStore(tmp_path)


def test_a_float32_store_keeps_what_the_vae_encoded_and_a_recipe_can_require_it(tmp_path, tiny_vae, image_folder):
    half = extract_latents(image_folder, tiny_vae, tmp_path / "half", resolution=32, batch_size=9, device="cpu",
                           progress=False)
    full = extract_latents(image_folder, tiny_vae, tmp_path / "full", resolution=32, batch_size=9, device="cpu",
                           progress=False, dtype="float32")
    z16, z32 = np.load(half / "latents.npy"), np.load(full / "latents.npy")
    assert z32.dtype == np.float32 and json.loads((full / "stats.json").read_text())["dtype"] == "float32"
    assert np.array_equal(z32.astype(np.float16), z16)  # the same encoding, rounded once to half
    assert np.abs(z32 - z16.astype(np.float32)).max() > 0  # float32 keeps the digits half drops
    assert latents.check_store_dtype(full, "float32") == "float32"
    with pytest.raises(latents.LatentStoreError, match=r"float16 latents, but data.store_dtype is float32.*--dtype"):
        latents.check_store_dtype(half, "float32")
    with pytest.raises(latents.LatentStoreError, match="--dtype float64: allowed: float16, float32"):
        extract_latents(image_folder, tiny_vae, tmp_path / "x", 32, device="cpu", progress=False, dtype="float64")

    cfg = tiny_run(steps=1, global_batch=4)
    cfg["data"] = {"name": "latents", "path": str(half), "store_dtype": "float32"}
    cfg["model_overrides"]["patch_sizes"] = [4, 2]
    with pytest.raises(latents.LatentStoreError, match=str(half / "latents.npy")):
        train(cfg, tmp_path / "refused")
    assert not (tmp_path / "refused" / "checkpoints").exists()


def test_store_dtype_applies_to_latents_and_does_not_change_a_run_id():
    from mpdit_bench.config import ConfigError
    from mpdit_bench.engine.run_config import validate_run_config
    from mpdit_bench.sweeps.experiment import load_experiment

    with pytest.raises(ConfigError, match="data.store_dtype.*applies to data.name latents"):
        validate_run_config({"model": "SiT-S/2", "data": {"name": "fashion-mnist", "store_dtype": "float32"}})
    with pytest.raises(ConfigError, match="data.store_dtype"):
        validate_run_config({"model": "SiT-S/2", "data": {"name": "latents", "path": "x", "store_dtype": "bf16"}})
    import dataclasses
    from mpdit_bench.sweeps.runspec import run_id

    spec = load_experiment("experiments/ablation_k.yaml").runs("paper")[0]
    assert spec.data["store_dtype"] == "float32"
    other = dataclasses.replace(spec, data={**spec.data, "store_dtype": None})
    assert run_id(other) == spec.run_id
    assert run_id(dataclasses.replace(spec, data={**spec.data, "hflip": True})) != spec.run_id


def test_a_vae_for_a_checkpoint_of_images_is_refused_before_sampling(tmp_path, tiny_vae):
    from mpdit_bench.config import ConfigError

    train(tiny_run(steps=1, global_batch=4), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(ConfigError, match=r"--vae.*none: this checkpoint generates fashion-mnist images"):
        sample_checkpoint(ckpt, 2, tmp_path / "s.npz", vae=tiny_vae, steps=2, progress=False)
    assert not (tmp_path / "s.npz").exists()
