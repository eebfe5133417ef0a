"""What the engine would refuse, a sweep or a search refuses when its file is loaded; names as users type them."""

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mpdit_bench.cli import app
from mpdit_bench.config import ConfigError
from mpdit_bench.models import model_config
from mpdit_bench.sweeps.experiment import load_experiment
from mpdit_bench.sweeps.search import load_space

ROOT = Path(__file__).parent.parent
runner = CliRunner()

EXPERIMENT = {
    "name": "tiny",
    "base": {"model": "MPDiT-B"},
    "scales": {"cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 8, "steps": 4},
                       "sample": {"num": 8, "steps": 2, "device": "cpu"},
                       "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy"]}}},
    "axes": [{"grid": {"model_overrides.refine_depth": [4, 6]}}],
}


def _write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("section, given, key, value, allowed", [
    ("train", {"learning_rate": 1e-3}, "train.learning_rate", 0.001, "one of the keys global_batch, lr"),
    ("train", {"ema_decay": 1.5}, "train.ema_decay", 1.5, "a number in [0, 1]"),
    ("data", {"name": "cifar10"}, "data.name", "cifar10", "fashion-mnist, latents"),
    ("sample", {"cfg_scale": -1}, "sample.cfg_scale", -1, "a number >= 0"),
    ("train", {"stage_proportions": [0.5, 0.5]}, "train.stage_proportions", [0.5, 0.5], "no patch schedule"),
])
def test_sweep_dry_run_refuses_what_training_refuses(tmp_path, section, given, key, value, allowed):
    data = copy.deepcopy(EXPERIMENT)
    data["scales"]["cpu"][section].update(given)
    path = _write(tmp_path, data)
    result = runner.invoke(app, ["sweep", str(path), "--scale", "cpu", "--dry-run", "--results",
                                 str(tmp_path / "results")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())  # rich wraps long lines
    assert str(path) in text and f"key {key!r} = {value!r}" in text and allowed in text
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("ref, why", [
    ("fashion-mnist:test:0", "the count '0' must be a positive integer"),
    ("fashion-mnist:valid", "dataset 'fashion-mnist:valid' is unknown"),
    ("fashion-mnist:test:many", "the count 'many' must be a positive integer"),
    ("refs/reference_images.npy", "unsupported file type '.npy'"),
])
def test_sweep_dry_run_refuses_a_malformed_reference(tmp_path, ref, why):
    data = copy.deepcopy(EXPERIMENT)
    data["scales"]["cpu"]["eval"]["ref"] = ref
    path = _write(tmp_path, data)
    result = runner.invoke(app, ["sweep", str(path), "--scale", "cpu", "--dry-run", "--results",
                                 str(tmp_path / "results")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert str(path) in text and f"key 'eval.ref' = {ref!r}" in text and why in text
    assert "an ADM .npz" in text and "fashion-mnist:test" in text  # what is allowed
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("ref", ["fashion-mnist:test", "fashion-mnist:train:100", "refs/not_here_yet.npz",
                                 "refs/an_image_folder"])
def test_a_well_formed_reference_passes_at_load(tmp_path, ref):
    data = copy.deepcopy(EXPERIMENT)
    data["scales"]["cpu"]["eval"]["ref"] = ref
    assert load_experiment(_write(tmp_path, data)).runs("cpu")[0].eval["ref"] == ref


def test_search_refuses_a_malformed_reference_at_load(tmp_path):
    space = yaml.safe_load((ROOT / "experiments" / "search_space.yaml").read_text())
    space["settings"]["eval"]["ref"] = "fashion-mnist:test:0"
    with pytest.raises(ConfigError) as err:
        load_space(_write(tmp_path, space, "space.yaml"))
    assert err.value.key == "eval.ref" and "positive integer" in str(err.value)


def test_the_sample_phases_own_keys_stay_out_of_the_run_config(tmp_path):
    spec = load_experiment(_write(tmp_path, EXPERIMENT)).runs("cpu")[0]
    assert spec.sample["device"] == "cpu" and spec.run_config()["sample"] == {"steps": 2}


def test_search_refuses_bad_settings_at_load(tmp_path):
    space = yaml.safe_load((ROOT / "experiments" / "search_space.yaml").read_text())
    space["settings"]["train"]["ema_decay"] = 1.5
    with pytest.raises(ConfigError) as err:
        load_space(_write(tmp_path, space, "space.yaml"))
    assert err.value.key == "train.ema_decay" and "space.yaml" in str(err.value)


@pytest.mark.parametrize("overrides, key, allowed", [
    (dict(depths=[6, 3, 3], refine_depth=4), "refine_depth", "not together with depths=[6, 3, 3]"),
    (dict(depths=[8, 3], refine_depth=4), "refine_depth", "depths [N, 4]"),
    (dict(patch_sizes=[8, 4, 2]), "patch_sizes", "one per level of depths=[6, 6]"),
])
def test_contradicting_overrides_are_refused(overrides, key, allowed):
    with pytest.raises(ConfigError) as err:
        model_config("MPDiT-B", **overrides)
    assert err.value.key == key and allowed in err.value.allowed


def test_agreeing_overrides_are_accepted():
    assert model_config("MPDiT-B", depths=[8, 4], refine_depth=4).depths == (8, 4)
    assert model_config("MPDiT-B", patch_sizes=[8, 4, 2], depths=[4, 4, 4]).depths == (4, 4, 4)
    assert model_config("DiT-B/2", patch_sizes=[4, 2], refine_depth=4).depths == (8, 4)


def test_flops_refuses_depths_with_refine_depth():
    result = runner.invoke(app, ["flops", "--model", "MPDiT-XL", "--set", "depths=[6,3,3]", "--set", "refine_depth=4",
                                 "--no-cross-check"])
    assert result.exit_code == 2 and "'refine_depth' = 4" in result.output


@pytest.mark.parametrize("name", ["ablation_k", "ablation_k.yaml", "experiments/ablation_k.yaml"])
def test_sweep_finds_an_experiment_by_name(monkeypatch, name):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, ["sweep", name, "--scale", "cpu", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "ablation_k at scale cpu" in result.output


def test_unknown_experiment_lists_the_experiments(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, ["sweep", "ablation_q", "--dry-run"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "'ablation_q'" in text
    assert "ablation_components, ablation_k, class_tokens" in text and "train_fmnist_cpu" not in text


def test_report_finds_an_experiment_by_file_name(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    out, results = tmp_path / "reports", tmp_path / "results"
    from report_records import write_record  # a report needs at least one record

    write_record(results, load_experiment(ROOT / "experiments" / "upsample.yaml").runs("paper")[0], {"fid": 1.0})
    result = runner.invoke(app, ["report", "upsample.yaml", "--results", str(results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "upsample_paper.md").is_file()
    missing = runner.invoke(app, ["report", "upsampl.yaml", "--results", str(tmp_path / "none"), "--out", str(out)])
    assert missing.exit_code == 2 and "upsample" in missing.output


def test_a_bad_slurm_setting_stops_the_sweep_before_any_job(tmp_path):
    path = _write(tmp_path, EXPERIMENT)
    results = tmp_path / "results"
    result = runner.invoke(app, ["sweep", str(path), "--scale", "cpu", "--results", str(results),
                                 "--slurm", "slurm_partiton=debug"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "slurm_partiton" in text and str(path) in text
    assert not list(results.rglob("*.sh"))  # no submission script written, nothing submitted
