"""The phase layer: the command lines of the contracts, and a run driven through a stand-in CLI."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from _data import needs_fashion_mnist
from mpdit_bench.sweeps.experiment import load_experiment
from mpdit_bench.sweeps.runner import execute_run
from mpdit_bench.sweeps.pipeline import (Pipeline, cli_metrics, evaluate_command, last_json_object, sample_command,
                                       train_command)

ROOT = Path(__file__).parent.parent
FAKE_CLI = (str(ROOT / "tests" / "fake_cli.py"),)
SETTINGS_CLI = (str(ROOT / "tests" / "settings_cli.py"),)


@pytest.fixture
def specs(tmp_path):
    data = {"name": "st", "base": {"model": "MPDiT-B"},
            "scales": {"cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 4, "steps": 6},
                               "sample": {"num": 5, "sampler": "euler", "steps": 3, "cfg_scale": 1.5},
                               # the stand-in CLI writes no real checkpoint for the held-out loss to read
                               "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy", "fid"],
                                        "heldout": False}},
                       "paper": {"nproc": 8, "data": {"name": "latents", "path": "lat"},
                                 "train": {"global_batch": 1024, "steps": 10}, "sample": {"num": 50000},
                                 "eval": {"ref": "ref.npz", "metrics": ["fid"]}}}}
    path = tmp_path / "st.yaml"
    path.write_text(yaml.safe_dump(data))
    exp = load_experiment(path)
    return exp.runs("cpu")[0], exp.runs("paper")[0]


def test_command_lines(specs, tmp_path):
    cpu, paper = specs
    run = tmp_path / "run"
    assert train_command(cpu, run) == [sys.executable, "-m", "mpdit_bench", "train", str(run / "config.yaml"),
                                       "--out", str(run)]
    assert train_command(paper, run)[:4] == ["torchrun", "--standalone", "--nproc_per_node=8", "-m"]
    assert sample_command(cpu, run)[3:] == ["sample", str(run / "checkpoints" / "last.pt"), "--num", "5", "--out",
                                            str(run / "samples.npz"), "--sampler", "euler", "--steps", "3",
                                            "--cfg-scale", "1.5"]
    assert evaluate_command(cpu, run)[3:] == ["evaluate", str(run / "samples.npz"), "--ref", "fashion-mnist:test",
                                              "--metrics", "proxy,fid", "--json"]
    assert cli_metrics(["fid", "precision", "recall", "fd_fmnist_proxy", "kid_fmnist_proxy"]) == "fid,prec,recall,proxy"


def test_parse_evaluate_output():
    assert last_json_object('progress 10%\n{"fid": 3.5, "kid": null}\n') == {"fid": 3.5, "kid": None}
    assert last_json_object('log\n{\n  "fid": 1.0\n}\n') == {"fid": 1.0}


@pytest.mark.slow
def test_run_through_the_contract_cli(specs, tmp_path):
    cpu, _ = specs
    run = tmp_path / "run"
    seen = []
    record = execute_run(cpu, run, Pipeline(entry=FAKE_CLI), on_validation=lambda s, v: seen.append((s, v)))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "MPDiT-B" and config["model_overrides"]["hidden_size"] == 96
    assert seen == [(2, 1.0), (4, 0.5), (6, 2.0 / 6)]  # every validation row, once, in order
    assert record["images_seen"] == 24 and record["params"] == cpu_params(cpu)
    assert record["metrics"]["fd_fmnist_proxy"] is None and record["metrics"]["fid"] is None  # null, not 0
    assert record["metrics"]["num_samples"] == 5 and "notes" not in record["metrics"]
    assert record["evaluation"]["metrics"] == ["proxy", "fid"]
    assert len(record["training_log"]) == 6 and record["sample_grid"].endswith("samples.png")
    assert json.loads((run / "record.json").read_text())["run_id"] == cpu.run_id


@pytest.mark.slow
def test_validation_hook_stops_training(specs, tmp_path, monkeypatch):
    cpu, _ = specs
    monkeypatch.setenv("FAKE_CLI_STEP_SLEEP", "2")  # still training when the first validation row is seen
    run = tmp_path / "run"

    def stop(step, val):
        raise KeyboardInterrupt("pruned")

    with pytest.raises(KeyboardInterrupt):
        execute_run(cpu, run, Pipeline(entry=FAKE_CLI), on_validation=stop)
    assert not (run / "summary.json").exists()  # the training process was stopped before it finished
    state = json.loads((run / "state.json").read_text())
    assert set(state["phases"]) == {"count"} and state["current"] == "train"


def cpu_params(spec):
    from mpdit_bench.config import ModelConfig
    from mpdit_bench.counting import analytic_counts

    return analytic_counts(ModelConfig.from_dict(spec.model_config))["params"]


class Commands(Pipeline):
    """The real pipeline, every phase through its command even for one process. The commands run the
    suite's CLI through tests/settings_cli.py, which records torch's settings while each phase works."""

    def __init__(self):
        super().__init__(entry=SETTINGS_CLI)

    def in_process(self, spec):
        return False


def watch_settings(pipeline: Pipeline) -> dict[str, tuple]:
    """phase -> torch's settings in this process (before, after) the phase; filled as the phases run."""
    from mpdit_bench.engine.torch_settings import current

    around: dict[str, tuple] = {}
    for name in pipeline.names:
        def watched(*args, _phase=getattr(pipeline, name), _name=name, **kwargs):
            before = current()
            try:
                return _phase(*args, **kwargs)
            finally:
                around[_name] = (before, current())

        setattr(pipeline, name, watched)
    return around


@needs_fashion_mnist
def test_a_one_process_run_inside_the_worker_matches_its_commands(tmp_path, monkeypatch):
    import numpy as np
    import torch

    from mpdit_bench.engine.torch_settings import current
    from settings_cli import LOG_ENV, install_recorders, read_records

    # what `mpdit-bench sweep` does: the commands' processes start with the worker's thread count
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "commands.jsonl"))
    install_recorders(tmp_path / "inside.jsonl", monkeypatch.setattr)
    worker = current()
    assert worker.matmul_tf32 is False  # torch's default, as in a fresh command process: training changes it
    data = {"name": "ip", "base": {"model": "MPDiT-B"},
            "scales": {"cpu": {"data": {"name": "fashion-mnist"},
                               "train": {"global_batch": 4, "steps": 3, "val_every": 3, "val_size": 8,
                                         "threads": 1},
                               "sample": {"num": 6, "steps": 2, "batch_size": 4, "cfg_scale": [1.5]},
                               "eval": {"ref": "fashion-mnist:test:40", "metrics": ["fd_fmnist_proxy"],
                                        "heldout": False, "bootstrap": 20}}}}
    path = tmp_path / "ip.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_experiment(path).runs("cpu")[0]
    assert Pipeline().in_process(spec) and not Commands().in_process(spec)
    assert not Pipeline(entry=FAKE_CLI).in_process(spec)
    seen = {"inside": [], "commands": []}
    inside_pipeline = Pipeline()
    around = watch_settings(inside_pipeline)
    records = {name: execute_run(spec, tmp_path / name, pipeline, on_validation=lambda s, v, n=name: seen[n].append(s))
               for name, pipeline in (("inside", inside_pipeline), ("commands", Commands()))}
    inside, commands = (tmp_path / "inside", tmp_path / "commands")
    # torch's settings: every in-worker phase leaves them as it found them, and each phase works under the
    # settings its command works under
    assert set(around) == set(Pipeline.names)
    for name, (before, after) in around.items():
        assert before == after == worker, name
    settings = {path: read_records(tmp_path / f"{path}.jsonl") for path in ("inside", "commands")}
    assert settings["inside"] == settings["commands"]
    assert set(settings["inside"]) == {"train", "sample", "evaluate"}
    expected = {"train": {**worker.as_dict(), "threads": 1, "matmul_tf32": True, "cudnn_tf32": True},
                "sample": {**worker.as_dict(), "matmul_tf32": True, "cudnn_tf32": True},
                "evaluate": worker.as_dict()}
    for phase, values in expected.items():
        assert settings["inside"][phase] == {tuple(sorted(values.items()))}, phase
    assert seen["inside"] == seen["commands"] == [3]
    a, b = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (inside, commands))
    assert a["step"] == b["step"] == 3
    # equal to float rounding: torch's FFT (the FNO time embedder) rounds its last bit differently when the
    # thread count was set by torch.set_num_threads than when it came from the environment
    assert all(torch.allclose(a["ema"][k], b["ema"][k], rtol=1e-5, atol=1e-8) for k in a["ema"])
    assert any(not torch.equal(a["ema"][k], torch.zeros_like(a["ema"][k])) for k in a["ema"])
    # Weights 1e-11 apart can move a pixel across a rounding boundary of the uint8 grid: one level at most.
    with np.load(inside / "samples.npz") as x, np.load(commands / "samples.npz") as y:
        np.testing.assert_array_equal(x["arr_1"], y["arr_1"])
        assert np.abs(x["arr_0"].astype(int) - y["arr_0"].astype(int)).max() <= 1
    # The metrics are float64 reductions (covariances, a matrix square root) whose summation order follows the
    # thread count, which differs between the two paths: 1.5e-9 relative was seen on another machine. 1e-6
    # relative is three orders above that and four below the metrics' own 95 % interval widths (~1e-2).
    metrics = [records[name]["metrics"] for name in ("inside", "commands")]
    assert metrics[0]["num_samples"] == metrics[1]["num_samples"]
    for key in ("fd_fmnist_proxy", "class_accuracy_fmnist_proxy"):
        assert metrics[0][key] == pytest.approx(metrics[1][key], rel=1e-6, abs=1e-12), key
    intervals = [records[name]["intervals"] for name in ("inside", "commands")]
    assert intervals[0].keys() == intervals[1].keys()
    for key, bounds in intervals[0].items():
        assert bounds == pytest.approx(intervals[1][key], rel=1e-6, abs=1e-12), key
    assert records["inside"]["evaluation"]["bootstrap"] == 20
    assert "(in the sweep worker)" in (inside / "logs" / "evaluate.log").read_text()
    assert "(in the sweep worker)" not in (commands / "logs" / "evaluate.log").read_text()
