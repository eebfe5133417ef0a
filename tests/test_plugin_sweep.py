"""A component defined outside the package, swept like a built-in: counted, trained, sampled, reported."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from _data import needs_fashion_mnist
from mpdit_bench.config import ModelConfig
from mpdit_bench.counting import count_config
from mpdit_bench.sweeps.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).parent / "plugin_example" / "nearest_upsample.py"


def _experiment(tmp_path, plugins=None):
    data = {"name": "own_upsample", "base": {"model": "MPDiT-B"},
            "scales": {"cpu": {"model_overrides": {"hidden_size": 32, "num_heads": 1, "depths": [1, 1],
                                                   "patch_sizes": [8, 4], "class_tokens": 2},
                               "data": {"name": "fashion-mnist", "limit": 16},
                               "train": {"global_batch": 4, "steps": 2, "threads": 1, "progress": False,
                                         "ema_warmup": True, "val_every": 2, "val_size": 8},
                               "sample": {"num": 4, "steps": 2, "batch_size": 4, "cfg_scale": 1.0},
                               "eval": {"ref": "fashion-mnist:test:40", "metrics": ["fd_fmnist_proxy"],
                                        "heldout": True, "bootstrap": 10}}},
            "axes": [{"grid": {"model_overrides.upsample": ["linear", "linear_nearest"]}}]}
    if plugins is not None:
        data["plugins"] = plugins
    path = tmp_path / "own_upsample.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_experiment_keeps_its_plugins_in_every_run_config_not_in_the_run_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(PLUGIN.parent)  # a relative path is relative to where the sweep starts
    exp = load_experiment(_experiment(tmp_path, ["nearest_upsample.py"]))
    runs = exp.runs("cpu")
    assert exp.plugins == [str(PLUGIN.resolve())]
    assert [r.model_config["upsample"] for r in runs] == ["linear", "linear_nearest"]
    assert all(r.run_config()["plugins"] == [str(PLUGIN.resolve())] for r in runs)
    # the same runs from --plugin instead of the file's key: the same ids (the model config names the part)
    monkeypatch.chdir(tmp_path)
    from_option = load_experiment(_experiment(tmp_path), plugins=[str(PLUGIN)]).runs("cpu")
    assert [r.run_id for r in from_option] == [r.run_id for r in runs]
    assert all(r.plugins == [str(PLUGIN.resolve())] for r in from_option)
    # a fresh process (a Slurm job, another worker) imports what it is given before the axes are checked
    script = ("import sys; from mpdit_bench.sweeps.experiment import load_experiment; "
              "runs = load_experiment(sys.argv[1], plugins=[sys.argv[2]]).runs('cpu'); "
              "print(' '.join(r.run_id for r in runs))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "own_upsample.yaml"), str(PLUGIN)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [r.run_id for r in runs]


@needs_fashion_mnist
def test_a_sweep_over_a_plugin_component_counts_trains_samples_and_reports_it(tmp_path, monkeypatch):
    from mpdit_bench.reports.report import write_reports
    from mpdit_bench.sweeps.runner import run_sweep

    monkeypatch.chdir(tmp_path)
    exp = load_experiment(_experiment(tmp_path, [str(PLUGIN)]))
    runs = exp.runs("cpu")
    results = tmp_path / "results"
    outcome = run_sweep(runs, results)
    assert not outcome.failed, outcome.failed
    records = {r["spec"]["model_config"]["upsample"]: r
               for r in (json.loads(p.read_text()) for p in results.rglob("record.json"))}
    assert set(records) == {"linear", "linear_nearest"}
    for upsample, record in records.items():
        counts = count_config(ModelConfig.from_dict(record["spec"]["model_config"]), cross_check=False)
        assert record["params"] == counts["params"] and record["gflops"] == counts["gflops"], upsample
        assert np.isfinite(record["metrics"]["heldout_loss"]), upsample
        assert np.isfinite(record["metrics"]["fd_fmnist_proxy"]), upsample
    # the plugin's part has its own size: Linear(D, D) instead of Linear(D, 4 D)
    assert records["linear_nearest"]["params"] < records["linear"]["params"]
    assert records["linear_nearest"]["gflops"] < records["linear"]["gflops"]

    # the run's checkpoint names its plugin: a fresh process samples it without --plugin
    run_dir = results / "own_upsample" / "cpu" / records["linear_nearest"]["run_id"]
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", "sample", str(run_dir / "checkpoints" / "last.pt"),
                           "--num", "2", "--steps", "1", "--out", str(tmp_path / "again.npz")],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                               "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "again.npz") as f:
        assert f["arr_0"].shape[0] == 2

    written = write_reports(results, tmp_path / "reports", "own_upsample", tmp_path)
    text = "\n".join(p.read_text() for p in written if p.suffix == ".md")
    assert "linear_nearest" in text and records["linear_nearest"]["run_id"] in text


def test_a_search_over_a_plugin_component_keeps_the_plugin_in_every_trials_run_config(tmp_path):
    from mpdit_bench.sweeps.search import load_space, trial_spec

    space = yaml.safe_load((ROOT / "experiments" / "search_space.yaml").read_text())
    space["space"] = {"upsample": ["linear", "linear_nearest"], "hidden_size": [64]}
    path = tmp_path / "own_space.yaml"
    path.write_text(yaml.safe_dump({**space, "plugins": [str(PLUGIN)]}))
    spec, cfg = trial_spec({"upsample": "linear_nearest", "hidden_size": 64}, load_space(path))
    assert cfg.upsample == "linear_nearest" and spec.run_config()["plugins"] == [str(PLUGIN.resolve())]
    path.write_text(yaml.safe_dump(space))  # the same plugin named by the command's --plugin instead
    spec, _ = trial_spec({"upsample": "linear_nearest", "hidden_size": 64}, load_space(path, [str(PLUGIN)]))
    assert spec.run_config()["plugins"] == [str(PLUGIN.resolve())]
