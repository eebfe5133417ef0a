"""Run an experiment's runs: locally one after another, resumable, shareable between workers.

Layout: ``RESULTS/<experiment>/<scale>/<run_id>/`` per run (state.json, record.json, curve.json, the
training run directory's files). A worker loops over the runs not finished yet, claims one (state.claim),
resumes it at the first phase not recorded in state.json, and writes record.json last. Any number of
workers, on one machine or on Slurm nodes sharing the folder, can run the same sweep; each run is done
once. The curve phase is the exception: it runs on every attempt and computes only the points its
curve.json lacks, and a finished run whose ``eval.every`` asks for a point its record lacks is taken up
again for that phase alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mpdit_bench.sweeps import curve
from mpdit_bench.sweeps.runspec import RunSpec
from mpdit_bench.sweeps.records import build_record, recorded_curve_steps
from mpdit_bench.sweeps.pipeline import ENTRY, Pipeline, ValidationHook
from mpdit_bench.sweeps.state import (RECORD, STATE, claim, is_claimed, is_finished, load_state, phases_of,
                                      read_json, write_json_atomic)


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, as Slurm and taskset set it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_worker(workers: int, env: dict[str, str] | None = None) -> int:
    """CPU threads each of ``workers`` local workers gives its phases: ``OMP_NUM_THREADS`` where it is set
    (by the user, or by the first worker for the others), else an equal share of the cores. Two workers of
    one thread each beat one of two threads on 2 cores, since the small kernels of a CPU-scale run do not
    keep two threads busy (docs/SWEEPS.md)."""
    env = os.environ if env is None else env
    if env.get("OMP_NUM_THREADS", "").isdigit() and int(env["OMP_NUM_THREADS"]) >= 1:
        return int(env["OMP_NUM_THREADS"])
    return max(1, cpu_cores() // max(1, workers))


def check_threads(runs: list[RunSpec], threads: int, workers: int) -> None:
    """Refuse a run whose ``train.threads`` would oversubscribe the cores the workers share."""
    from mpdit_bench.config import ConfigError

    for spec in runs:
        asked = spec.train.get("threads")
        if workers > 1 and asked and asked > threads:
            raise ConfigError(f"{spec.label}: train.threads", asked,
                              f"at most {threads} with {workers} workers on {cpu_cores()} cores, or no "
                              f"train.threads (each worker's phases then take {threads})")


@contextlib.contextmanager
def worker_threads(threads: int):
    """This worker's phases run on ``threads`` CPU threads: torch's count for the phases run in this process,
    ``OMP_NUM_THREADS`` for the phases run as commands (they inherit this process's environment). Both are
    restored when the block ends."""
    import torch

    before_torch, before_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        if before_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before_env


SPAWNED_WORKER = "MPDIT_SWEEP_WORKER"  # set to its number (2, 3, ...) in a worker another worker started


def worker_command(experiment: str | Path, scale: str, results_dir: str | Path, seeds: int | None = None,
                   entry: tuple[str, ...] = ENTRY, plugins: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The command of one more local worker on the same sweep: the same experiment file, scale, results
    folder, seeds and plugins, one worker, no live view."""
    cmd = [sys.executable, *entry, "sweep", str(experiment), "--scale", scale, "--results", str(results_dir)]
    cmd += [arg for plugin in plugins for arg in ("--plugin", plugin)]
    if seeds is not None:
        cmd += ["--seeds", str(seeds)]
    return cmd + ["--workers", "1", "--no-live"]


def worker_environment(threads: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of another local worker: this one's, with ``OMP_NUM_THREADS`` at its share of the
    cores (`threads_per_worker` reads it back there)."""
    return {**(os.environ if env is None else env), "OMP_NUM_THREADS": str(threads)}


def start_workers(count: int, experiment: str | Path, scale: str, results_dir: str | Path, seeds: int | None,
                  threads: int, plugins: list[str] | tuple[str, ...] = (), quiet: bool = True) -> list[subprocess.Popen]:
    """``count`` more local workers on the same sweep, each with ``threads`` CPU threads. ``quiet``: their
    output is discarded (a live view owns the terminal; each run's phases write their own logs); else they
    print their runs' start and finish lines beside this worker's. Each knows itself by `SPAWNED_WORKER`."""
    cmd, env = worker_command(experiment, scale, results_dir, seeds, plugins=plugins), worker_environment(threads)
    return [subprocess.Popen(cmd, env={**env, SPAWNED_WORKER: str(number)},
                             stdout=subprocess.DEVNULL if quiet else None) for number in range(2, count + 2)]


def work_order(runs: list[RunSpec]) -> list[RunSpec]:
    """The runs longest first (by the dry run's estimate): workers that share a sweep then finish
    together instead of one waiting on the last long run."""
    cost = {row["run_id"]: row["device_hours"] for row in dry_run_rows(runs)}
    return sorted(runs, key=lambda spec: -cost[spec.run_id])


def run_dir_of(results_dir: Path, spec: RunSpec) -> Path:
    return Path(results_dir) / spec.experiment / spec.scale / spec.run_id


def execute_run(spec: RunSpec, run_dir: Path, pipeline: Any, on_validation: ValidationHook | None = None,
                on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the phases not yet recorded for this run (the caller holds its claim); returns the record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "run.json", spec.to_dict())
    state = load_state(run_dir)
    state["attempts"] = state.get("attempts", 0) + 1
    state["phases"].pop("curve", None)  # its points are kept in curve.json: rerun, it computes what is missing
    write_json_atomic(run_dir / STATE, state)
    for name in pipeline.names:
        if name in state["phases"]:
            continue  # finished before a kill or a crash: never redone
        if on_phase:
            on_phase(name)
        state["current"] = name
        write_json_atomic(run_dir / STATE, state)
        start = time.time()
        fn = getattr(pipeline, name)
        result = fn(spec, run_dir, on_validation) if name == "train" and on_validation else fn(spec, run_dir)
        state["phases"][name] = {"result": result, "seconds": time.time() - start, "finished_at": time.time()}
        state["current"] = None
        write_json_atomic(run_dir / STATE, state)
    record = build_record(spec, state, run_dir)
    write_json_atomic(run_dir / RECORD, record)
    return record


def is_done(spec: RunSpec, run_dir: Path, pipeline: Any | None = None) -> bool:
    """Finished, with every curve point its ``eval.every`` asks for computed or reported missing."""
    if not is_finished(run_dir):
        return False
    if "curve" not in (pipeline or Pipeline).names or not curve.wanted(spec):
        return True
    record = read_json(run_dir / RECORD) or {}
    final = curve.final_step_of(record.get("train") or {}, spec)
    return not curve.needs_update(spec, run_dir, final, recorded_curve_steps(record))


@dataclass
class SweepResult:
    finished: list[str]   # run ids this worker finished
    failed: dict[str, str]  # run id -> error


def run_sweep(runs: list[RunSpec], results_dir: str | Path, pipeline: Any | None = None, worker: str | None = None,
              poll_s: float = 5.0, view: Callable[[], None] | None = None,
              log: Callable[[str], None] = lambda msg: None) -> SweepResult:
    """Work on ``runs`` until each one is finished, failed in this worker, or only held by others who die."""
    pipeline = pipeline or Pipeline()
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    results_dir = Path(results_dir)
    finished: list[str] = []
    failed: dict[str, str] = {}
    while True:
        pending = [s for s in runs if s.run_id not in failed and not is_done(s, run_dir_of(results_dir, s), pipeline)]
        if not pending:
            return SweepResult(finished, failed)
        progressed = False
        for spec in pending:
            run_dir = run_dir_of(results_dir, spec)
            with claim(run_dir, worker) as mine:
                if not mine or is_done(spec, run_dir, pipeline):  # another worker has it, or just finished it
                    continue
                progressed = True
                log(f"{worker}: started run {spec.run_id} {spec.label}")
                start = time.time()
                try:
                    execute_run(spec, run_dir, pipeline, on_phase=lambda name: view() if view else None)
                    finished.append(spec.run_id)
                    log(f"{worker}: finished run {spec.run_id} {spec.label} in {time.time() - start:.0f} s")
                except Exception as err:  # noqa: BLE001 - one failed run must not stop the sweep
                    failed[spec.run_id] = f"{type(err).__name__}: {err}"
                    state = load_state(run_dir)
                    state.setdefault("errors", []).append({"worker": worker, "time": time.time(),
                                                           "message": failed[spec.run_id].splitlines()[0][:200],
                                                           "error": traceback.format_exc()[-4000:]})
                    state["current"] = None
                    write_json_atomic(run_dir / STATE, state)
                    log(f"{worker}: failed run {spec.run_id} {spec.label}: {failed[spec.run_id]}")
            if view:
                view()
        if not progressed:
            time.sleep(poll_s)  # the rest are held by other workers: wait for them to finish or die


# ---- status for the live view ------------------------------------------------------------------------
def run_status(spec: RunSpec, results_dir: Path) -> tuple[str, str]:
    """(status, detail): finished / running / failed / waiting."""
    run_dir = run_dir_of(results_dir, spec)
    if is_finished(run_dir):
        return "finished", ""
    state = read_json(run_dir / STATE) or {}
    if is_claimed(run_dir):
        owner = read_json(run_dir / "owner.json") or {}
        return "running", f"{state.get('current') or ''} ({owner.get('worker', '?')})"
    if state.get("errors"):
        return "failed", state["errors"][-1].get("message", "")[:100]
    done = ",".join(phases_of(state))
    return "waiting", f"done: {done}" if done else ""


def status_table(runs: list[RunSpec], results_dir: Path, title: str):
    from rich.table import Table

    rows = [(spec, *run_status(spec, Path(results_dir))) for spec in runs]
    counts = {k: sum(1 for r in rows if r[1] == k) for k in ("finished", "running", "failed", "waiting")}
    table = Table(title=f"{title}: {counts['finished']} done, {counts['running']} running, "
                        f"{counts['failed']} failed, {counts['waiting']} left of {len(runs)}")
    table.add_column("run", no_wrap=True, min_width=max((len(spec.run_id) for spec in runs), default=3))  # never cut
    for col in ("label", "status", "detail"):
        table.add_column(col, overflow="fold")
    colour = {"finished": "green", "running": "yellow", "failed": "red", "waiting": "dim"}
    for spec, status, detail in rows:
        table.add_row(spec.run_id, spec.label, f"[{colour[status]}]{status}[/]", detail)
    return table


# ---- dry run ------------------------------------------------------------------------------------------
def dry_run_rows(runs: list[RunSpec], threads: int = 2) -> list[dict[str, Any]]:
    """Every run with its counts and estimated cost on a worker of ``threads`` CPU threads."""
    from mpdit_bench.config import ModelConfig
    from mpdit_bench.counting import analytic_counts
    from mpdit_bench.sweeps.costs import estimate_cost
    from mpdit_bench.sweeps.budget import training_flops

    rows = []
    for spec in runs:
        counts = analytic_counts(ModelConfig.from_dict(spec.model_config))
        # a PPFlow model's forward depends on the stage: train on its stage mix (finest stage = the counts)
        mixed = training_flops(spec, spec.experiment) if spec.model_config["time_patch_sizes"] else None
        cost = estimate_cost(counts, spec.train, spec.sample, spec.scale, spec.nproc, mixed, threads,
                             curve.cost_plan(spec))
        rows.append({"run_id": spec.run_id, "label": spec.label, "seed": spec.seed, "smoke": spec.smoke,
                     "model": spec.model, "axes": spec.axes, "nproc": spec.nproc,
                     **counts, **cost, "steps": spec.train["steps"], "global_batch": spec.train["global_batch"]})
    return rows
