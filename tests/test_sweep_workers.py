"""Local sweep workers: the extra workers' command comes from the parsed arguments, and the thread setting
reaches the workers and the phases without staying in the parent's environment."""

import os
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from mpdit_bench.cli import app
from mpdit_bench.sweeps import pipeline, runner
from mpdit_bench.sweeps.runner import SweepResult, worker_command, worker_environment, worker_threads

ROOT = Path(__file__).resolve().parents[1]


def test_worker_command_is_built_from_the_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mpdit-bench", "sweep", "typo", "--dry-run", "--slurm", "x=1"])
    cmd = worker_command(Path("experiments/ablation_k.yaml"), "cpu", "out/results", seeds=3)
    assert cmd[0] == sys.executable and cmd[1:3] == ["-m", "mpdit_bench"]
    assert cmd[3:] == ["sweep", "experiments/ablation_k.yaml", "--scale", "cpu", "--results", "out/results",
                       "--seeds", "3", "--workers", "1", "--no-live"]
    assert "--seeds" not in worker_command("e.yaml", "paper", "r")  # the experiment's own seeds


def test_worker_threads_reach_the_children_but_not_the_parent(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    child = worker_environment(1)
    assert child["OMP_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "7"
    assert child["PATH"] == os.environ["PATH"]
    monkeypatch.delenv("OMP_NUM_THREADS")
    before = torch.get_num_threads()
    with worker_threads(before + 1):
        assert os.environ["OMP_NUM_THREADS"] == str(before + 1) and torch.get_num_threads() == before + 1
    assert "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == before


def test_a_local_sweep_starts_its_other_workers_from_its_arguments(monkeypatch, tmp_path):
    started, during = [], []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(sys, "argv", ["something", "else", "entirely"])
    monkeypatch.setattr(runner, "start_workers", lambda *args: started.append(args) or [])
    monkeypatch.setattr(pipeline, "evaluation_references", lambda runs: [])

    def fake_sweep(runs, results, log=None, **_):
        during.append((os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads(), len(runs)))
        return SweepResult([], {})

    monkeypatch.setattr(runner, "run_sweep", fake_sweep)
    monkeypatch.chdir(ROOT)
    threads_before = torch.get_num_threads()
    result = CliRunner().invoke(app, ["sweep", "ablation_k", "--scale", "cpu", "--results", str(tmp_path),
                                      "--workers", "2", "--seeds", "2", "--no-live"])
    assert result.exit_code == 0, result.output
    count, experiment, scale, results, seeds, threads = started[0]
    assert (count, Path(experiment), scale, results, seeds) == (1, Path("experiments/ablation_k.yaml"), "cpu",
                                                                 str(tmp_path), 2)
    assert during[0][:2] == (str(threads), threads) and during[0][2] > 0
    assert "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == threads_before
