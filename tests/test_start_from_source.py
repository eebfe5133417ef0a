"""A run starts where PPFlow's authors started: train.init_from in a source's format (init_source), imported,
and converted to the run's patch schedule when it is the run's model without one; the level embedding
zero (the suite's) or N(0, 0.02) (PPFlow's, kept when adapting)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from mpdit_bench import checkpoint
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.engine.sampling import load_sampling_model
from mpdit_bench.engine.train import train, validate_run_config
from mpdit_bench.imports import import_checkpoint
from mpdit_bench.imports.start import starting_point
from mpdit_bench.models import build_model
from mpdit_bench.ppflow.convert import ppflow_config
from _data import needs_fashion_mnist

SIT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "sit_tiny" / "released.pt"
TRAIN = {"seed": 0, "init_from": str(SIT), "init_source": "sit"}


def sit_config() -> ModelConfig:
    return ModelConfig.from_dict(import_checkpoint(SIT, num_heads=2)["model_config"])


def ppf_config(levels: int = 2, **overrides) -> ModelConfig:
    return ppflow_config(sit_config(), levels, **overrides)


def loaded(cfg: ModelConfig, state: dict) -> torch.nn.Module:
    model = build_model(cfg).eval()
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize("levels", [2, 3])
def test_sits_released_file_starts_a_ppflow_model_that_is_sit_at_its_finest_stage(levels, tmp_path):
    cfg = ppf_config(levels)
    start = starting_point(TRAIN, cfg, tmp_path)
    assert start["model_config"] == cfg.to_dict() and start["converted_from"]["levels"] == levels
    ppf = loaded(cfg, start["ema"])
    sit, _ = load_sampling_model(import_checkpoint(SIT, num_heads=2), True, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 4, 16, 16, generator=g), torch.tensor([0, 4, 9])
    with torch.no_grad():
        fine = torch.full((3,), 0.1)  # suite t: the least noisy stage is the source model itself
        assert torch.allclose(ppf(x, fine, y), sit(x, fine, y), atol=1e-6)
        coarse = torch.full((3,), 0.9)  # patchify "average" / unpatchify "copy": a different, finite function
        out = ppf(x, coarse, y)
        assert torch.isfinite(out).all() and not torch.allclose(out, sit(x, coarse, y), atol=1e-3)
    assert torch.count_nonzero(start["ema"]["level_embed.weight"]) == 0


def test_ppflows_level_embedding_is_drawn_once_for_model_and_ema_from_the_runs_seed(tmp_path):
    cfg = ppf_config(3, level_embed_init="normal")
    first = starting_point(TRAIN, cfg, tmp_path)
    table = first["ema"]["level_embed.weight"]
    assert table.shape == (3, cfg.hidden_size)
    assert torch.equal(table, first["model"]["level_embed.weight"])
    assert abs(table.std().item() - 0.02) < 0.004 and abs(table.mean().item()) < 0.004  # 192 draws of N(0, 0.02)
    again = starting_point(TRAIN, cfg, tmp_path)["ema"]["level_embed.weight"]
    other = starting_point({**TRAIN, "seed": 1}, cfg, tmp_path)["ema"]["level_embed.weight"]
    assert torch.equal(table, again) and not torch.allclose(table, other)


def test_a_source_of_another_backbone_is_refused_naming_the_keys(tmp_path):
    cfg = ppflow_config(sit_config().replace(depths=[3]), 2)
    with pytest.raises(ConfigError, match=r"train\.init_from.*without its patch schedule.*depths"):
        starting_point(TRAIN, cfg, tmp_path)


def test_a_level_embedding_init_needs_a_patch_schedule():
    with pytest.raises(ConfigError, match="level_embed_init.*only a patch schedule"):
        sit_config().replace(level_embed_init="normal")
    with pytest.raises(ConfigError, match="level_embed_init.*zero, normal"):
        ppf_config(2, level_embed_init="uniform")


def test_the_level_embedding_init_keeps_ids_of_configs_that_do_not_set_it():
    from mpdit_bench.config import CONFIG_HASH_GENERATION, identity_values

    assert "level_embed_init" not in identity_values(ppf_config(2).to_dict(), CONFIG_HASH_GENERATION)
    assert ppf_config(2).config_hash() != ppf_config(2, level_embed_init="normal").config_hash()


RUN = {"model": "PPF-B-2",
       "model_overrides": {"hidden_size": 32, "num_heads": 2, "depths": [2], "in_channels": 1, "num_classes": 10,
                           "input_size": 32, "time_embed_scale": 1, "level_embed_init": "normal"},
       "data": {"name": "fashion-mnist", "limit": 16},
       "train": {"global_batch": 8, "lr": 1.0e-3, "steps": 2, "seed": 3, "device": "cpu", "threads": 1,
                 "log_every": 1, "ckpt_every": 2, "progress": False, "init_from": "random", "init_source": "sit",
                 "stage_proportions": [0.5, 0.5]}}


@needs_fashion_mnist
def test_a_ppflow_run_trains_from_a_sit_file_written_in_sits_format(tmp_path):
    summary = train(copy.deepcopy(RUN), tmp_path / "run")
    assert summary["final_step"] == 2 and np.isfinite(summary["final_loss"])
    written = tmp_path / "run" / "random_sit.pt"
    start = import_checkpoint(written, "sit", num_heads=2)  # the SiT file the run converted
    assert not start["model_config"]["time_patch_sizes"]
    state = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    for key, value in start["ema"].items():  # two AdamW steps of lr 1e-3 move a weight by ~2e-3 at most
        assert torch.allclose(state["model"][key], value, atol=3e-3), key
    assert abs(state["model"]["level_embed.weight"].std().item() - 0.02) < 0.006


def test_init_source_names_the_format_of_a_checkpoint_that_is_set():
    base = {"model": "SiT-S/2", "data": {"name": "fashion-mnist"}}
    validate_run_config({**base, "train": {"steps": 10, "init_from": "x.pt", "init_source": "sit"}})
    with pytest.raises(ConfigError, match=r"train\.init_source.*not set"):
        validate_run_config({**base, "train": {"steps": 10, "init_source": "sit"}})


def test_a_suite_checkpoint_written_before_later_keys_existed_still_starts_a_run(tmp_path):
    """Its model_config lacks keys added since (read as their defaults), as older runs' checkpoints do."""
    ckpt = import_checkpoint(SIT, num_heads=2)
    for key in ("upsample_refine", "upsample_refine_ratio", "level_embed_init"):
        del ckpt["model_config"][key]
    checkpoint.save_atomic(ckpt, tmp_path / "old.pt")
    start = starting_point({"seed": 0, "init_from": str(tmp_path / "old.pt"), "init_source": None},
                           ppf_config(2), tmp_path)
    assert start["model_config"] == ppf_config(2).to_dict() and "converted_from" in start
    assert starting_point({"seed": 0, "init_from": str(tmp_path / "old.pt"), "init_source": None},
                          sit_config(), tmp_path)["model_config"]["upsample_refine_ratio"] == 4
