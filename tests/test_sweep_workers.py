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
    monkeypatch.setattr(runner, "start_workers", lambda *args, **kwargs: started.append((args, kwargs)) or [])
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
    (count, experiment, scale, results, seeds, threads, plugins), options = started[0]
    assert (count, Path(experiment), scale, results, seeds, plugins) == (
        1, Path("experiments/ablation_k.yaml"), "cpu", str(tmp_path), 2, [])
    assert options == {"quiet": False}  # no live view: the other workers print their runs' lines too
    assert during[0][:2] == (str(threads), threads) and during[0][2] > 0
    assert "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == threads_before


def test_other_workers_print_their_runs_unless_a_live_view_owns_the_terminal(monkeypatch):
    popened = []
    monkeypatch.setattr(runner.subprocess, "Popen", lambda cmd, env, stdout: popened.append((env, stdout)))
    runner.start_workers(2, "e.yaml", "cpu", "r", None, 1, quiet=False)
    runner.start_workers(1, "e.yaml", "cpu", "r", None, 1)
    assert [stdout for _, stdout in popened] == [None, None, runner.subprocess.DEVNULL]
    assert [env[runner.SPAWNED_WORKER] for env, _ in popened] == ["2", "3", "2"]


def _dry_run_text(monkeypatch, workers, cores=2):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runner, "cpu_cores", lambda: cores)
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["sweep", "ablation_k", "--dry-run", "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split()), " ".join(result.stderr.split())


def test_workers_above_the_cores_warn_and_do_not_speed_up_the_estimate(monkeypatch):
    import re

    wall = {}
    for workers in (1, 2, 16):
        out, err = _dry_run_text(monkeypatch, workers)
        wall[workers] = float(re.search(r"([0-9.]+) wall-hours", out).group(1))
        assert ("warning" in err and "16 local workers on the 2 core(s)" in err) == (workers == 16)
    assert "assuming 16 local worker(s) of 1 thread(s) each, 2 at a time on 2 core(s)" in out
    assert wall[2] < wall[1] and wall[16] == wall[2]  # 16 workers on 2 cores run 2 at a time


def test_sweep_refuses_a_worker_count_below_one(monkeypatch):
    monkeypatch.chdir(ROOT)
    for workers in ("0", "-3"):
        result = CliRunner().invoke(app, ["sweep", "ablation_k", "--dry-run", "--workers", workers])
        assert result.exit_code == 2 and f"--workers {workers} is invalid" in result.output
        assert ">= 1" in result.output
