"""Sweep commands: `sweep`, `search`, `report`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from mpdit_bench.cli.common import PluginOption, console, err_console, fail
from mpdit_bench.cli.kinds import require_kind
from mpdit_bench.cli.render import pareto_table, print_dry_run
from mpdit_bench.config import ConfigError, parse_set


def sweep(experiment: str = typer.Argument(..., help="Experiment YAML or name in experiments/, e.g. ablation_k"),
          scale: str = typer.Option("cpu", help="paper (ImageNet latents, 8 GPUs) or cpu (Fashion-MNIST, minutes)"),
          results: str = typer.Option("results", help="Results folder (one sub-folder per run)"),
          dry_run: bool = typer.Option(False, "--dry-run", help="List the runs with params, GFLOPs and cost"),
          as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the runs as one JSON list"),
          seeds: Optional[int] = typer.Option(None, "--seeds", help="Replicate every run over N training seeds "
                                              "(overrides the experiment's seeds)"),
          workers: Optional[int] = typer.Option(None, help="Local worker processes sharing this sweep, each "
                                                "with an equal share of the cores (default: the scale's "
                                                "`workers`, else 1)"),
          slurm: Optional[list[str]] = typer.Option(None, "--slurm", help="Submit to Slurm with submitit; "
                                                    "key=value executor settings (repeatable), e.g. slurm_partition=gpu"),
          live: bool = typer.Option(True, help="Live view of runs done / running / left"),
          plugins: Optional[list[str]] = PluginOption) -> None:
    """Run an experiment end to end: count, train, sample, evaluate, record. Resumable; shareable by workers."""
    from mpdit_bench.sweeps.experiment import load_experiment
    from mpdit_bench.sweeps.lookup import find_experiment

    if workers is not None and workers < 1:
        fail(f"--workers {workers} is invalid; allowed: a number of local worker processes >= 1")
    try:
        path = find_experiment(experiment)
    except ConfigError as err:
        fail(str(err))
    require_kind(path, "experiment")
    try:
        exp = load_experiment(str(path), plugins or [])
        runs = exp.runs(scale, seeds)
    except ConfigError as err:
        fail(str(err))
    if as_json and not dry_run:
        fail("--json goes with --dry-run (a sweep prints its live table)")
    workers = workers if workers is not None else exp.workers(scale)
    if dry_run:
        _dry_run(exp.name, scale, runs, workers, as_json)
    elif slurm is not None:
        _submit_to_slurm(str(path), runs, results, slurm, plugins or [])
    else:
        _run_locally(path, exp.name, scale, seeds, runs, results, workers, live, plugins or [])


def _warn_above_cores(workers: int, cores: int) -> None:
    if workers > cores:
        err_console.print(f"[yellow]warning:[/] {workers} local workers on the {cores} core(s) this process may "
                          f"use: at most {cores} run at once, the others share their cores")


def _dry_run(name: str, scale: str, runs: list, workers: int, as_json: bool) -> None:
    from mpdit_bench.sweeps.costs import THROUGHPUT_NOTE, concurrent_workers, sweep_wall_hours
    from mpdit_bench.sweeps.runner import cpu_cores, dry_run_rows, threads_per_worker

    threads, cores = threads_per_worker(workers), cpu_cores()
    rows = dry_run_rows(runs, threads)
    if as_json:
        print(json.dumps(rows))
        return
    _warn_above_cores(workers, cores)
    wall = sweep_wall_hours(rows, workers, scale, cores)
    at_once = concurrent_workers(workers, cores)
    assumed = f"{workers} local worker(s) of {threads} thread(s) each" + (
        f", {at_once} at a time on {cores} core(s)" if at_once < workers else f" on {cores} core(s)")
    print_dry_run(f"{name} at scale {scale}: {len(runs)} runs (dry run, nothing executed)", rows,
                  f"total: {sum(r['device_hours'] for r in rows):.3f} device-hours, "
                  f"{wall:.3f} wall-hours ({wall * 60:.1f} min) assuming {assumed}. "
                  f"GFLOPs: the true count (fvcore convention; conv.: the MPDiT paper's), analytic on the meta "
                  f"device, equal to the `flops` command's; "
                  f"{THROUGHPUT_NOTE}.")


def _run_locally(experiment: Path, name: str, scale: str, seeds: Optional[int], runs: list, results: str,
                 workers: int, live: bool, plugins: list[str]) -> None:
    """This process is the first of ``workers`` local workers; it starts the others from the same arguments."""
    from rich.live import Live

    from mpdit_bench.evaluation import SourceError
    from mpdit_bench.sweeps.pipeline import evaluation_references, prepare_evaluations
    from mpdit_bench.sweeps.runner import (SPAWNED_WORKER, check_threads, cpu_cores, run_dir_of, run_sweep,
                                           start_workers, status_table, threads_per_worker, work_order,
                                           worker_threads)
    from mpdit_bench.sweeps.state import is_finished

    title = f"{name} ({scale})"
    threads = threads_per_worker(workers)
    todo = [s for s in runs if not is_finished(run_dir_of(Path(results), s))]
    try:
        check_threads(runs, threads, workers)
        references = evaluation_references(todo)
    except (ConfigError, SourceError) as err:
        fail(str(err))
    spawned = bool(os.environ.get(SPAWNED_WORKER))  # one of the workers below: it prints only its runs' lines
    _warn_above_cores(workers, cpu_cores())
    show_live = live and console.is_terminal
    others = start_workers(max(0, workers - 1), experiment, scale, results, seeds, threads, plugins,
                           quiet=show_live)
    with worker_threads(threads):
        if references and others:  # while the others train their first runs, this one fills the evaluation caches
            console.print("filling the evaluation caches (once per machine) while the other workers train")
            try:
                prepare_evaluations(references)
            except Exception as err:  # noqa: BLE001 - each run's evaluation meets it again and records it
                console.print(f"[yellow]could not fill the evaluation caches[/]: {escape(str(err))}")
        if show_live:
            screen = Console(file=sys.stdout)  # bound now: a phase run in this process sends sys.stdout to its log
            with Live(get_renderable=lambda: status_table(runs, results, title), console=screen,
                      refresh_per_second=1):
                result = run_sweep(work_order(runs), results)
        else:
            if not spawned:
                console.print(f"{len(runs)} runs, {workers} worker(s) of {threads} thread(s) each")
            result = run_sweep(work_order(runs), results,
                               log=lambda msg: console.print(msg, markup=False, highlight=False))
    for proc in others:
        proc.wait()
    if not spawned:
        console.print(status_table(runs, results, title))
    if result.failed:
        fail(f"{len(result.failed)} run(s) failed; their logs are in {results}/{name}/{scale}/<run>/logs; "
             "run the same command again to retry them", code=1)


def _submit_to_slurm(experiment: str, runs: list, results: str, settings: list[str], plugins: list[str]) -> None:
    from mpdit_bench.sweeps import slurm as sl
    from mpdit_bench.sweeps.runner import is_done, run_dir_of

    todo = [s for s in runs if not is_done(s, run_dir_of(Path(results), s))]
    if not todo:
        console.print("every run is finished; nothing to submit")
        return
    try:
        params = {**todo[0].slurm, **parse_set(settings, "--slurm")}
    except ConfigError as err:
        fail(str(err))
    try:  # submitit checks every setting's name and type: a mistake stops here, before any job is submitted
        executor = sl.build_executor(Path(results) / "slurm", params, todo[0].nproc, scale=todo[0].scale)
    except (NameError, TypeError, ValueError) as err:
        fail(f"{experiment}: Slurm settings (scales.{todo[0].scale}.slurm, then --slurm) {params} are invalid: {err}")
    jobs = sl.submit(executor, sl.plan_jobs(experiment, todo, results, plugins))
    console.print(f"submitted {len(jobs)} job(s): " + ", ".join(j.job_id for j in jobs))


def search(space: str = typer.Argument(..., help="Search space YAML or name in experiments/, e.g. search_space"),
           trials: int = typer.Option(10, "--trials", "-n", help="Trials for this worker to run"),
           storage: Optional[str] = typer.Option(None, help="Optuna storage: an RDB URL (sqlite:///x.db, "
                                                 "postgresql://...) or a journal file path ending in .log"),
           results: str = typer.Option("results", help="Results folder for the trials' runs"),
           plugins: Optional[list[str]] = PluginOption) -> None:
    """Multi-objective architecture search (quality vs GFLOPs) with Optuna, under a GFLOPs budget."""
    from mpdit_bench.sweeps.lookup import find_experiment
    from mpdit_bench.sweeps.search import load_space, run_search

    if trials < 0:
        fail(f"--trials {trials} is invalid; allowed: a number of trials >= 0 (0 prints the study's front)")
    try:
        path = find_experiment(space, kind="space")
    except ConfigError as err:
        fail(str(err))
    require_kind(path, "search space")
    _check_storage(storage)
    try:
        spec = load_space(path, plugins or [])
    except ConfigError as err:
        fail(str(err))
    study = run_search(spec, trials, storage=storage, results_dir=results)
    console.print(pareto_table(study, spec.objective_names))


def _check_storage(storage: Optional[str]) -> None:
    """An RDB URL's form and driver, before a study is made (a journal file path needs neither)."""
    if storage is None or "://" not in storage:
        return
    import sqlalchemy

    try:
        sqlalchemy.create_engine(storage)  # parses the URL and loads its driver; connects only when used
    except (sqlalchemy.exc.ArgumentError, ImportError) as err:
        fail(f"--storage {storage!r} is invalid ({err}); allowed: an RDB URL whose driver is installed "
             "(sqlite:///x.db, postgresql://...) or a journal file path ending in .log")


def report(experiment: Optional[str] = typer.Argument(None, help="Experiment name or YAML (default: all)"),
           results: str = typer.Option("results", help="Results folder holding the runs' record.json"),
           out: str = typer.Option("reports", help="Output folder for markdown and PNG"),
           plugins: Optional[list[str]] = PluginOption) -> None:
    """Conclusions, quality along training and compute to target, tables beside the paper's published
    figures, verdicts by metric, plots and sample grids. A results folder without records is refused."""
    from mpdit_bench.reports.report import write_reports
    from mpdit_bench.sweeps.lookup import EXPERIMENTS_DIR, experiment_names, find_experiment

    name, experiments_dir = experiment, EXPERIMENTS_DIR
    try:
        if experiment and experiment.endswith((".yaml", ".yml")):  # a bare name may name records only (search)
            path = find_experiment(experiment)
            name, experiments_dir = path.stem, path.parent
        written = write_reports(results, out, name, experiments_dir)
    except ConfigError as err:
        fail(str(err))
    for path in written:
        console.print(f"wrote {path}")
    if not written:
        known = ", ".join(experiment_names(experiments_dir))
        fail(f"no records found under {results}" + (f" for experiment {name} (experiments in {experiments_dir}/: "
                                                     f"{known})" if name else ""), code=1)
