"""The resolved model config travels in the run's config.yaml; training reads it, contradictions are refused."""

import copy

import pytest
import torch
import yaml

from _tiny import tiny_run
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.engine.run_config import resolve_model_config, validate_run_config
from mpdit_bench.engine.train import train
from mpdit_bench.models import model_config

FMNIST = {"name": "fashion-mnist", "channels": 1, "num_classes": 10, "size": 32}


def resolved(run):
    return model_config(run["model"], **run["model_overrides"], in_channels=1, num_classes=10, input_size=32)


def test_training_records_the_resolved_config_and_trains_it_again(tmp_path):
    run = tiny_run(steps=2)
    train(run, tmp_path / "a")
    recorded = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert ModelConfig.from_dict(recorded["model_config"]) == resolved(run)
    # the recorded file is a run config: trained again it gives the same model, step for step
    train(recorded, tmp_path / "b")
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_the_model_config_wins_over_the_preset_and_must_agree_with_overrides():
    run = tiny_run()
    cfg = resolved(run).replace(hidden_size=64, num_heads=2)  # not what preset + overrides give
    explicit = {**copy.deepcopy(run), "model_overrides": {"depths": [1, 1]}, "model_config": cfg.to_dict()}
    assert resolve_model_config(validate_run_config(explicit), FMNIST) == cfg
    contradicting = {**explicit, "model_overrides": {"hidden_size": 32}}
    with pytest.raises(ConfigError, match=r"model_overrides\.hidden_size.*64, the value of model_config\.hidden_size"):
        validate_run_config(contradicting, source="run.yaml")


def test_a_model_config_that_disagrees_with_the_data_is_refused():
    cfg = resolved(tiny_run()).replace(in_channels=4)
    run = {**tiny_run(), "model_config": cfg.to_dict()}
    with pytest.raises(ConfigError, match=r"model_config\.in_channels.*1 \(set by the data fashion-mnist\)"):
        resolve_model_config(validate_run_config(run), FMNIST)


def test_a_model_config_with_a_bad_value_names_the_key():
    bad = {**resolved(tiny_run()).to_dict(), "upsample": "nearest"}
    with pytest.raises(ConfigError, match="upsample"):
        validate_run_config({**tiny_run(), "model_config": bad}, source="run.yaml")
