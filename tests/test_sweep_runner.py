"""The runner: each run done once, phase-level resume after SIGKILL, concurrent workers, records, Slurm plan."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _data import needs_fashion_mnist  # noqa: E402
from sweep_fakes import FakePhases, read_events  # noqa: E402

from mpdit_bench.sweeps.experiment import load_experiment  # noqa: E402
from mpdit_bench.sweeps.records import load_records  # noqa: E402
from mpdit_bench.config import ConfigError  # noqa: E402
from mpdit_bench.sweeps.runner import (check_threads, dry_run_rows, run_dir_of, run_sweep, status_table,  # noqa: E402
                                       threads_per_worker, work_order)
from mpdit_bench.sweeps.state import load_state  # noqa: E402

ROOT = Path(__file__).parent.parent
EXPERIMENT = {
    "name": "tiny",
    "base": {"model": "MPDiT-B"},
    "scales": {"cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 8, "steps": 8},
                       "sample": {"num": 8}, "eval": {"ref": "fashion-mnist:test",
                                                      "metrics": ["fd_fmnist_proxy", "fid"]},
                       "slurm": {"slurm_partition": "gpu"}}},
    "axes": [{"grid": {"model_overrides.refine_depth": [2, 4, 6], "train.lr": [1e-3, 2e-3]}}],
}


@pytest.fixture
def sweep(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    return path, load_experiment(path).runs("cpu"), tmp_path / "results", tmp_path / "events.log"


def worker(path, results, log, sleep):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "sweep_fakes.py"), str(path), "cpu",
                             str(results), str(log), str(sleep)], env=env)


def starts(events):
    return Counter((e["run"], e["phase"]) for e in events if e["event"] == "start")


def test_runs_once_and_records(sweep):
    path, runs, results, log = sweep
    result = run_sweep(runs, results, FakePhases(log))
    assert sorted(result.finished) == sorted(r.run_id for r in runs) and not result.failed
    first = read_events(log)
    assert set(starts(first).values()) == {1} and len(starts(first)) == 4 * len(runs)
    assert run_sweep(runs, results, FakePhases(log)).finished == []  # finished runs are never repeated
    assert read_events(log) == first
    frame = load_records(results)
    assert len(frame) == len(runs) and frame["metric.fd_fmnist_proxy"].isna().all()  # null stays missing
    rec = frame.iloc[0]["record"]
    assert rec["training_log"] and rec["training_log"][0]["val_loss"] == 1.0 and rec["images_seen"] == 64
    assert rec["curve"] == [] and rec["curve_missing"] == []  # no eval.every: no curve along training
    assert rec["params"] > 0 and rec["gflops"] > 0 and rec["software"]["python"]


def test_every_run_a_worker_takes_is_logged_with_its_id_and_label(sweep):
    path, runs, results, log = sweep
    lines = []
    run_sweep(runs[:2], results, FakePhases(log), worker="w1", log=lines.append)
    run_sweep(runs[2:3], results, FakePhases(log, fail_phase="sample"), worker="w2", log=lines.append)
    for spec in runs[:2]:
        assert f"w1: started run {spec.run_id} {spec.label}" in lines
        assert any(line.startswith(f"w1: finished run {spec.run_id} {spec.label} in ") for line in lines)
    assert f"w2: started run {runs[2].run_id} {runs[2].label}" in lines
    assert any(line.startswith(f"w2: failed run {runs[2].run_id} {runs[2].label}: PhaseError") for line in lines)
    assert len(lines) == 6


def test_phase_resume_after_a_failure(sweep):
    path, runs, results, log = sweep
    broken = run_sweep(runs[:2], results, FakePhases(log, fail_phase="sample"))
    assert len(broken.failed) == 2 and not broken.finished
    state = load_state(run_dir_of(results, runs[0]))
    assert set(state["phases"]) == {"count", "train"} and state["errors"]
    assert "failed" in _render(status_table(runs, results, "tiny"))
    run_sweep(runs[:2], results, FakePhases(log))
    counts = starts(read_events(log))
    for spec in runs[:2]:  # resumed at sampling: training ran once
        assert counts[(spec.run_id, "train")] == 1 and counts[(spec.run_id, "sample")] == 2
        assert (run_dir_of(results, spec) / "record.json").is_file()


def test_a_state_file_with_its_phases_under_stages_resumes(sweep):
    """state.json files that keep the finished phases under ``stages`` resume at the first phase missing."""
    import json

    path, runs, results, log = sweep
    run_sweep(runs[:1], results, FakePhases(log, fail_phase="sample"))
    run_dir = run_dir_of(results, runs[0])
    state = json.loads((run_dir / "state.json").read_text())
    state["stages"] = state.pop("phases")
    (run_dir / "state.json").write_text(json.dumps(state))
    assert set(load_state(run_dir)["phases"]) == {"count", "train"}
    run_sweep(runs[:1], results, FakePhases(log))
    counts = starts(read_events(log))
    assert counts[(runs[0].run_id, "train")] == 1 and counts[(runs[0].run_id, "sample")] == 2
    written = json.loads((run_dir / "state.json").read_text())
    assert "stages" not in written and set(written["phases"]) == {"count", "train", "sample", "evaluate"}
    record = json.loads((run_dir / "record.json").read_text())
    assert set(record["timings"]) == {"count", "train", "sample", "evaluate"}


@pytest.mark.slow
def test_resume_after_sigkill(sweep):
    path, runs, results, log = sweep
    proc = worker(path, results, log, 0.1)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill in the middle of the third run's training
        if any(e["phase"] == "train" and e["event"] == "start" for e in read_events(log)[12:]):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_events(log)
    done_before = {(e["run"], e["phase"]) for e in before if e["event"] == "done"}
    assert 0 < len(done_before) < 4 * len(runs)
    records_before = {p.parent.name: p.stat().st_mtime_ns for p in results.rglob("record.json")}

    restarted = worker(path, results, log, 0.0)
    assert restarted.wait(timeout=120) == 0
    after = read_events(log)[len(before):]
    redone = {(e["run"], e["phase"]) for e in after if e["event"] == "start"} & done_before
    assert not redone  # nothing that had finished was run again
    done = Counter((e["run"], e["phase"]) for e in before + after if e["event"] == "done")
    assert all(done[(r.run_id, "evaluate")] == 1 for r in runs)  # every run finished exactly once
    for spec in runs:
        assert (run_dir_of(results, spec) / "record.json").is_file()
    for run, mtime in records_before.items():  # finished records untouched
        assert next(results.rglob(f"{run}/record.json")).stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_two_workers_never_share_a_run(sweep):
    path, runs, results, log = sweep
    procs = [worker(path, results, log, 0.05) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    events = read_events(log)
    assert set(starts(events).values()) == {1} and len(starts(events)) == 4 * len(runs)
    by_run = {}
    for e in events:
        by_run.setdefault(e["run"], set()).add(e["pid"])
    assert all(len(pids) == 1 for pids in by_run.values())  # one worker did all of a run's phases
    assert len(list(results.rglob("record.json"))) == len(runs)


def test_slurm_submission_is_built_not_sent(sweep, tmp_path, monkeypatch):
    from mpdit_bench.sweeps import slurm

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_srun = bin_dir / "srun"  # submitit looks for srun to decide it is on a Slurm cluster
    fake_srun.write_text("#!/bin/sh\nexit 1\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path, runs, results, log = sweep
    executor = slurm.build_executor(tmp_path / "slurm", {**runs[0].slurm, "timeout_min": 30}, nproc=8)
    jobs = slurm.plan_jobs(str(path), runs, results)
    assert len(jobs) == len(runs) and jobs[0][0] is slurm.slurm_job and jobs[0][1][3] == runs[0].run_id
    text = executor._executor._make_submission_file_text("python -c pass", "0")
    assert "#SBATCH --partition=gpu" in text and "#SBATCH --gpus-per-node=8" in text and "--time=30" in text
    with pytest.raises(Exception):
        slurm.build_executor(tmp_path / "slurm", {"no_such_setting": 1}, nproc=1)


def _render(table) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(table)
    return console.export_text()


def test_workers_share_the_cores_unless_omp_num_threads_says(monkeypatch):
    monkeypatch.setattr("mpdit_bench.sweeps.runner.cpu_cores", lambda: 8)
    assert threads_per_worker(1, env={}) == 8 and threads_per_worker(2, env={}) == 4
    assert threads_per_worker(16, env={}) == 1  # never zero
    assert threads_per_worker(2, env={"OMP_NUM_THREADS": "3"}) == 3  # the user's, or the first worker's


def test_train_threads_that_oversubscribe_the_workers_are_refused(sweep):
    _, runs, _, _ = sweep
    runs[1].train["threads"] = 2
    check_threads(runs, threads=2, workers=1)
    check_threads(runs, threads=2, workers=2)
    with pytest.raises(ConfigError, match=r"train.threads.*\b2\b.*at most 1 with 2 workers"):
        check_threads(runs, threads=1, workers=2)


def test_work_order_is_longest_first_and_keeps_every_run(sweep):
    _, runs, _, _ = sweep
    runs[2].train["steps"] = 400  # the longest by far
    order = work_order(runs)
    assert sorted(s.run_id for s in order) == sorted(s.run_id for s in runs)
    assert order[0].run_id == runs[2].run_id
    cost = {r["run_id"]: r["device_hours"] for r in dry_run_rows(runs)}
    assert [cost[s.run_id] for s in order] == sorted(cost.values(), reverse=True)


def test_the_shipped_main_job_runs_two_single_thread_workers_at_cpu_scale():
    exp = load_experiment(ROOT / "experiments" / "ablation_k.yaml")
    assert exp.workers("cpu") == 2 and exp.workers("paper") == 1
    assert all(not spec.train.get("threads") for spec in exp.runs("cpu"))


@needs_fashion_mnist
def test_a_local_sweep_of_two_workers_runs_each_run_once_inside_the_workers(tmp_path):
    from mpdit_bench.sweeps.runner import cpu_cores

    data = {"name": "duo", "base": {"model": "MPDiT-B"},
            "scales": {"cpu": {"workers": 2, "data": {"name": "fashion-mnist"},
                               "train": {"global_batch": 4, "steps": 2},
                               "sample": {"num": 6, "steps": 2},
                               "eval": {"ref": "fashion-mnist:test:30", "metrics": ["fd_fmnist_proxy"]}}},
            "axes": [{"grid": {"model_overrides.refine_depth": [2, 4]}}]}
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(data))
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"MPDIT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "mpdit_bench", "sweep", str(path), "--scale", "cpu", "--results",
                           str(results), "--no-live"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert f"2 worker(s) of {max(1, cpu_cores() // 2)} thread(s) each" in text
    for spec in load_experiment(path).runs("cpu"):  # whichever worker ran it, its lines reach the terminal
        assert f"started run {spec.run_id} {spec.label}" in text and f"finished run {spec.run_id} {spec.label}" in text
    assert text.count("done, 0 running") == 1  # one status table: the worker started by the sweep prints none
    assert "filling the evaluation caches" in text and "2 done, 0 running, 0 failed" in text
    runs = load_experiment(path).runs("cpu")
    for spec in runs:
        run = run_dir_of(results, spec)
        assert (run / "record.json").is_file()
        for phase in ("train", "sample", "evaluate"):  # once each, inside a worker
            assert (run / "logs" / f"{phase}.log").read_text().count("$ (in the sweep worker)") == 1
    assert len(list((tmp_path / "cache" / "reference").glob("proxy-*.npz"))) == 1
