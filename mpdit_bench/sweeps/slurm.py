"""Submitting a sweep to Slurm with submitit: one job per unfinished run, same commands as locally.

Each job runs the local runner on its one run, so claims, phase resume and records work unchanged; a job
resubmitted after a preemption resumes its run where it stopped. Executor settings come from the scale's
``slurm:`` section of the experiment, overridden by ``--slurm key=value`` on the command line. Keys are
submitit's AutoExecutor parameters (timeout_min, slurm_partition, nodes, gpus_per_node, cpus_per_task, ...).

A job of several nodes runs the runner once, on its first node (no srun around it); its train phase starts
one torchrun per node with srun (`pipeline.train_command`), so ``nproc`` processes run on every node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpdit_bench.sweeps.runspec import RunSpec

DEFAULTS = {"timeout_min": 60 * 24, "nodes": 1, "tasks_per_node": 1}


def slurm_job(experiment_path: str, scale: str, results_dir: str, run_id: str, plugins: tuple[str, ...] = ()) -> str:
    """What a Slurm job executes: the one run, through the ordinary runner (``plugins``: the sweep's --plugin)."""
    from mpdit_bench.sweeps.experiment import load_experiment
    from mpdit_bench.sweeps.runner import run_sweep

    runs = [s for s in load_experiment(experiment_path, plugins).runs(scale) if s.run_id == run_id]
    if not runs:
        raise ValueError(f"run {run_id} is not in {experiment_path} at scale {scale} (the file changed?)")
    result = run_sweep(runs, results_dir)
    if result.failed:
        raise RuntimeError(f"run {run_id} failed: {result.failed[run_id]}")
    return run_id


def build_executor(folder: str | Path, params: dict[str, Any], nproc: int, cluster: str | None = "slurm",
                   scale: str = "paper"):
    """A configured submitit executor; torchrun inside the job starts ``nproc`` processes per node, on its
    GPUs at paper scale (8 CPU cores each), on CPU cores at cpu scale (no GPU asked for)."""
    import submitit

    per_node = ({"gpus_per_node": nproc, "cpus_per_task": max(1, 8 * nproc)} if scale == "paper"
                else {"cpus_per_task": nproc})
    settings = {**DEFAULTS, **per_node, **params}
    if settings["nodes"] > 1:
        settings["slurm_use_srun"] = False
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    executor.update_parameters(**settings)
    return executor


def plan_jobs(experiment_path: str, runs: list[RunSpec], results_dir: str | Path,
              plugins: list[str] | tuple[str, ...] = ()) -> list[tuple]:
    """(function, args) for each run: what `submit` hands to the executor."""
    return [(slurm_job, (str(experiment_path), s.scale, str(results_dir), s.run_id, tuple(plugins))) for s in runs]


def submit(executor, jobs: list[tuple]) -> list:
    """Submit all jobs as one Slurm array."""
    with executor.batch():
        handles = [executor.submit(fn, *args) for fn, args in jobs]
    return handles
