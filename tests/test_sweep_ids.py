"""Run ids and config hashes of finished sweeps never change: a changed id re-runs a finished run.

The values below were computed by the suite before its id policy was shared between the model config and
the sweeps; they pin the policy (which keys count, which are left out at their default) for presets, the
CPU rule, PPFlow schedules, later-added keys at and off their default, replicates, budgets and search."""

import pytest

from mpdit_bench.config import ModelConfig
from mpdit_bench.models import model_config
from mpdit_bench.sweeps.cpu_scale import cpu_scaled
from mpdit_bench.sweeps.experiment import load_experiment

CONFIG_HASHES = {
    "MPDiT-B": "8c98f84c068d",
    "MPDiT-XL": "cedfe9f09460",
    "DiT-B/2+shared+tokens+fno": "39b083883ae0",
}
CPU_HASHES = {
    "MPDiT-B": "585f1ac15857",
    "MPDiT-XL": "23c54aed8eee",
    "DiT-B/2+shared+tokens+fno": "0de13ff0380b",
}
RUN_IDS = {  # (experiment, scale, label, training seed): run id
    ("ablation_k", "cpu", "MPDiT-B k=4", 0): "05128791a037",
    ("ablation_k", "cpu", "MPDiT-B k=4", 2): "832590301888",
    ("ablation_k", "cpu", "MPDiT-XL k=8", 0): "4eb9b92f99a6",
    ("ablation_k", "paper", "DiT-B/2+shared+tokens+fno (isotropic)", 0): "4a902148c097",
    ("ablation_k", "paper", "MPDiT-XL k=6", 0): "07a38591e5be",
    ("upsample", "cpu", "Linear", 0): "ef1fe7ab7e06",
    ("upsample", "cpu", "Linear+Linear", 0): "0c7cc874b0fd",
    ("upsample", "cpu", "Linear+MLP (r = 4)", 0): "c14d5ac78a92",
    ("upsample", "paper", "Linear+Conv", 0): "54bd8b0f1f40",
    ("ppflow", "cpu", "MPDiT-B", 0): "04de0d9c58e8",
    ("ppflow", "cpu", "PPF-B-3", 0): "ec27cd358212",
    ("ppflow", "paper", "PPF-XL-2", 0): "ed9931d6e964",
    ("ppflow", "paper", "SiT-B/2 (isotropic)", 0): "eedee9df091c",
    ("ppflow_design", "cpu", "PPF-B-2", 0): "7486e86289ec",
    # PPFlow's recipe at paper scale (raw t, N(0, 0.02) level embedding, weight decay 0, flips, 3 guided
    # channels, heun2 over 250 points) made this a different run: the id changed with it
    ("ppflow_design", "paper", "PPF-B-2", 0): "3101a517f6b0",
}


@pytest.mark.parametrize("name", sorted(CONFIG_HASHES))
def test_config_hashes_of_presets_and_their_cpu_scale_are_unchanged(name):
    cfg = model_config(name)
    assert cfg.config_hash() == CONFIG_HASHES[name]
    assert cpu_scaled(cfg).config_hash() == CPU_HASHES[name]


def test_config_hashes_with_later_keys_off_their_default_are_unchanged():
    assert model_config("MPDiT-B").replace(upsample_refine="mlp").config_hash() == "4bb6f4966db0"
    ppflow = model_config("DiT-B/2").replace(time_patch_sizes=["4x4", "2x2"], time_boundaries=[0.5])
    assert ppflow.config_hash() == "6abb4893fbe8"


@pytest.mark.parametrize("experiment", sorted({key[0] for key in RUN_IDS}))
def test_run_ids_of_experiments_are_unchanged(experiment):
    exp = load_experiment(f"experiments/{experiment}.yaml")
    for scale in ("cpu", "paper"):
        ids = {(experiment, scale, s.label, s.seed): s.run_id for s in exp.runs(scale)}
        pinned = {key: value for key, value in RUN_IDS.items() if key[:2] == (experiment, scale)}
        assert pinned, (experiment, scale)
        assert {key: ids.get(key) for key in pinned} == pinned


def test_run_ids_of_search_trials_are_unchanged():
    from mpdit_bench.sweeps.search import load_space, trial_spec

    space = load_space("experiments/search_space.yaml")
    assert trial_spec({}, space)[0].run_id == "37b99f554a02"
    assert trial_spec({"refine_depth": 2, "hidden_size": 128}, space)[0].run_id == "a2f18c7a84e6"


def test_every_model_config_key_is_declared_in_the_id_policy():
    """A new ModelConfig key must say whether ids made before it existed keep it out at its default."""
    from mpdit_bench.config import KEY_GENERATIONS

    assert set(KEY_GENERATIONS) == set(ModelConfig().to_dict())
