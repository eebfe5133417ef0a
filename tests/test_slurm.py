"""Sweeps on a real Slurm cluster: slurmctld + two slurmd + munged started on this machine by
scripts/slurm-local.sh, jobs submitted through submitit by `mpdit-bench sweep --slurm` (make test-slurm)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mpdit_bench import checkpoint
from mpdit_bench.sweeps.pipeline import free_port

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"hidden_size": 32, "num_heads": 2, "depths": [1, 1], "class_tokens": 2}
TRAIN = {"global_batch": 8, "steps": 4, "lr": 1.0e-3, "ema_decay": 0.9, "ema_warmup": True, "device": "cpu",
         "threads": 1, "log_every": 1, "ckpt_every": 2, "progress": False}


def experiment(name, train=None, seeds=(1,)):
    return {"name": name, "base": {"model": "MPDiT-B"},
            "scales": {"cpu": {"model_overrides": TINY_MODEL, "data": {"name": "fashion-mnist", "limit": 16},
                               "train": {**TRAIN, **(train or {})}, "sample": {"num": 8, "steps": 2},
                               "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy"],
                                        "device": "cpu"}}},
            "axes": [{"grid": {"train.seed": list(seeds)}}]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A fresh one-machine cluster (own folder and ports); its environment for the commands below."""
    if not shutil.which("slurmctld"):
        pytest.fail("Slurm is not installed: `make install` installs Debian's slurm-wlm and munge")
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "MPDIT_SLURM_DIR": str(folder), "MPDIT_SLURM_PORT": str(free_port())}
    script = [str(ROOT / "scripts" / "slurm-local.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    env = {**env, "SLURM_CONF": str(folder / "slurm.conf"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "MPDIT_CACHE": str(folder / "cache")}  # the proxy weights are shipped; features cache here
    yield env
    subprocess.run(["scancel", "--user", str(os.getuid())], env=env, capture_output=True)
    subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=120)


def sweep(env, path, results, *slurm):
    """`mpdit-bench sweep PATH --scale cpu --slurm ...`; the submitted job ids."""
    cmd = [sys.executable, "-m", "mpdit_bench", "sweep", str(path), "--scale", "cpu", "--results", str(results),
           "--slurm", "slurm_partition=debug", *[a for s in slurm for a in ("--slurm", s)]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=path.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"submitted \d+ job\(s\): (.*)", done.stdout).group(1).split(", ")


def wait(env, jobs, timeout=400):
    end = time.time() + timeout
    while time.time() < end:
        queued = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)], env=env, capture_output=True,
                                text=True).stdout.split()
        if not queued:
            return
        time.sleep(1)
    pytest.fail(f"jobs {jobs} still queued after {timeout} s")


def completions(env):
    """Slurm's own record of finished jobs (sacct over the job completion log): {job id: fields}."""
    out = subprocess.run(["sacct", "--completion", "-P", "-o", "jobid,state,nnodes,nodelist"], env=env,
                         capture_output=True, text=True).stdout
    rows = [line.split("|") for line in out.strip().splitlines()[1:]]
    return {r[0]: {"state": r[1], "nodes": int(r[2]), "nodelist": r[3]} for r in rows}


def raw_id(env, job):
    """The numeric job id of an array task (3_1 -> 4), as the completion log names it."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], env=env, capture_output=True, text=True).stdout
    return re.search(r"JobId=(\d+)", out).group(1)


def write(tmp_path, data):
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_dirs(results, name):
    return sorted((results / name / "cpu").iterdir())


def test_a_sweep_runs_on_slurm_and_every_run_has_its_record(cluster, tmp_path):
    path = write(tmp_path, experiment("slurm_sweep", seeds=(1, 2)))
    results = tmp_path / "results"
    jobs = sweep(cluster, path, results)
    assert len(jobs) == 2
    wait(cluster, jobs)
    done = completions(cluster)
    for job in jobs:
        assert done[raw_id(cluster, job)]["state"] == "COMPLETED"
        assert f"job_id={job}" in (results / "slurm" / f"{job}_0_log.out").read_text()  # submitit ran it there
    dirs = run_dirs(results, "slurm_sweep")
    assert len(dirs) == 2
    for run in dirs:
        record = json.loads((run / "record.json").read_text())
        assert record["train"]["final_step"] == 4 and record["metrics"]["fd_fmnist_proxy"] is not None
        assert set(record["timings"]) == {"count", "train", "heldout", "sample", "evaluate", "curve"}
    again = subprocess.run([sys.executable, "-m", "mpdit_bench", "sweep", str(path), "--scale", "cpu", "--results",
                            str(results), "--slurm", "slurm_partition=debug"], env=cluster, capture_output=True,
                           text=True, cwd=tmp_path)
    assert "nothing to submit" in again.stdout  # finished runs are never resubmitted


def test_a_cancelled_job_resubmitted_resumes_from_its_checkpoint(cluster, tmp_path):
    path = write(tmp_path, experiment("slurm_resume", train={"steps": 200, "ckpt_every": 5}))
    results = tmp_path / "results"
    (job,) = sweep(cluster, path, results)
    end = time.time() + 300
    while time.time() < end:  # cancel at the first checkpoint, mid-training
        last = next(iter((results / "slurm_resume" / "cpu").glob("*/checkpoints/last.pt")), None)
        if last is not None:
            break
        time.sleep(0.2)
    subprocess.run(["scancel", job], env=cluster, check=True)
    wait(cluster, [job])
    (run,) = run_dirs(results, "slurm_resume")
    state = json.loads((run / "state.json").read_text())
    saved = checkpoint.load(run / "checkpoints" / "last.pt")["step"]
    assert set(state["phases"]) == {"count"} and 5 <= saved < 200 and not (run / "record.json").exists()
    assert completions(cluster)[raw_id(cluster, job)]["state"] == "CANCELLED"

    (job2,) = sweep(cluster, path, results)
    wait(cluster, [job2])
    assert completions(cluster)[raw_id(cluster, job2)]["state"] == "COMPLETED"
    after = json.loads((run / "state.json").read_text())
    assert after["attempts"] == 2 and after["phases"]["count"] == state["phases"]["count"]  # not counted again
    log = (run / "logs" / "train.log").read_text()
    assert log.count("mpdit_bench train") == 2 and f"resumed from {run / 'checkpoints' / 'last.pt'} at step" in log
    resumed_at = int(re.search(r"resumed from .* at step (\d+)", log).group(1))
    assert resumed_at >= saved
    with open(run / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, 201))  # each step once, the cancelled job's rows past the checkpoint dropped
    assert json.loads((run / "record.json").read_text())["train"]["final_step"] == 200


def test_a_two_node_job_trains_one_torchrun_per_node_equal_to_one_process(cluster, tmp_path):
    from mpdit_bench.engine.train import train

    path = write(tmp_path, experiment("slurm_nodes"))
    results = tmp_path / "results"
    (job,) = sweep(cluster, path, results, "nodes=2")
    wait(cluster, [job])
    done = completions(cluster)[raw_id(cluster, job)]
    assert done["state"] == "COMPLETED" and done["nodes"] == 2, done
    (run,) = run_dirs(results, "slurm_nodes")
    log = (run / "logs" / "train.log").read_text()
    assert "srun --nodes=2" in log and "torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d" in log
    two = checkpoint.load(run / "checkpoints" / "last.pt")
    assert two["world_size"] == 2 and two["step"] == 4 and (run / "record.json").is_file()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    train(cfg, tmp_path / "one")
    one = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")
    for key, a in one["model"].items():
        assert torch.allclose(a, two["model"][key], rtol=1e-5, atol=1e-6), key
