"""The `mpdit-bench` command line: each command is a thin layer over the library."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mpdit_bench.config import ConfigError, parse_set

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Architecture search and ablation benchmarking of multi-patch diffusion transformers.")
console = Console()
err_console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="Config override key=value (repeatable), e.g. --set refine_depth=4")


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command()
def models(pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'MPDiT-*'"),
           resolution: int = typer.Option(256, help="Image resolution in pixels (latent = px / 8)"),
           as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table")) -> None:
    """List model presets with parameters and GFLOPs (analytic count, equal to fvcore's)."""
    from mpdit_bench.summary import preset_rows

    try:
        rows = preset_rows(pattern, resolution)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"mpdit-bench presets at {resolution} px")
    for col in ("model", "patches", "depths", "D", "m", "time", "modulation", "params (M)", "GFLOPs",
                "paper params", "paper GFLOPs"):
        table.add_column(col, justify="right" if col[0].isupper() or "params" in col or "GFLOPs" in col else "left")
    for r in rows:
        table.add_row(r["model"], str(r["patch_sizes"]), str(r["depths"]), str(r["hidden_size"]),
                      str(r["class_tokens"]), r["time_embedder"], r["modulation"], _fmt(r["params"] / 1e6, 1),
                      _fmt(r["gflops_analytic"]), _fmt(r["paper_params"], 1), _fmt(r["paper_gflops"]))
    console.print(table)


@app.command()
def flops(model: str = typer.Option(..., "--model", "-m", help="Preset name (see `models`) or b / l / xl"),
          resolution: int = typer.Option(256, help="Image resolution in pixels: 256 or 512 (latent = px / 8)"),
          overrides: Optional[list[str]] = SetOption,
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
          cross_check: bool = typer.Option(True, help="Also count with ptflops")) -> None:
    """Parameters and GFLOPs of one configuration: true (fvcore), analytic, paper convention, ptflops."""
    from mpdit_bench.summary import count_model

    try:
        result = count_model(model, resolution, parse_set(overrides or []), cross_check=cross_check)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{result['model']} at {resolution} px", show_header=True)
    table.add_column("quantity")
    table.add_column("ours", justify="right")
    table.add_column("paper", justify="right")
    table.add_row("params (M)", _fmt(result["params"] / 1e6, 2), _fmt(result["paper_params"], 1))
    table.add_row("trainable params (M)", _fmt(result["params_trainable"] / 1e6, 2), "")
    table.add_row("GFLOPs, true (fvcore, attention counted)", _fmt(result["gflops"], 3), "")
    table.add_row("GFLOPs, analytic", _fmt(result["gflops_analytic"], 3), "")
    table.add_row("GFLOPs, paper convention", _fmt(result["gflops_paper_convention"], 3), _fmt(result["paper_gflops"]))
    table.add_row("GMACs, ptflops cross-check", _fmt(result["gmacs_ptflops"], 3), "")
    console.print(table)
    cfg = result["config"]
    console.print(f"patches {cfg['patch_sizes']} depths {cfg['depths']} D={cfg['hidden_size']} "
                  f"heads={cfg['num_heads']} m={cfg['class_tokens']} time={cfg['time_embedder']}x"
                  f"{cfg['time_embedder_layers']} modulation={cfg['modulation']} upsample={cfg['upsample']} "
                  f"config hash {result['config_hash']}")


@app.command()
def components() -> None:
    """List the registered components of every kind."""
    from mpdit_bench import registry

    for kind in registry.kinds():
        console.print(f"[bold]{kind}[/]: " + ", ".join(registry.names(kind)))

# ---- sweeps, search and reports (issue 5) ----------------------------------------------------------------
@app.command()
def sweep(experiment: str = typer.Argument(..., help="Experiment YAML, e.g. experiments/ablation_k.yaml"),
          scale: str = typer.Option("cpu", help="paper (ImageNet latents, 8 GPUs) or cpu (Fashion-MNIST, minutes)"),
          results: str = typer.Option("results", help="Results folder (one sub-folder per run)"),
          dry_run: bool = typer.Option(False, "--dry-run", help="List the runs with params, GFLOPs and cost"),
          workers: int = typer.Option(1, help="Local worker processes sharing this sweep"),
          slurm: Optional[list[str]] = typer.Option(None, "--slurm", help="Submit to Slurm with submitit; "
                                                    "key=value executor settings (repeatable), e.g. slurm_partition=gpu"),
          live: bool = typer.Option(True, help="Live view of runs done / running / left")) -> None:
    """Run an experiment end to end: count, train, sample, evaluate, record. Resumable; shareable by workers."""
    from mpdit_bench.sweeps.experiment import load_experiment

    try:
        exp = load_experiment(experiment)
        runs = exp.runs(scale)
    except ConfigError as err:
        fail(str(err))
    if dry_run:
        _sweep_dry_run(exp.name, scale, runs)
    elif slurm is not None:
        _sweep_slurm(experiment, runs, results, slurm)
    else:
        _sweep_local(exp.name, scale, runs, results, workers, live)


def _sweep_dry_run(name: str, scale: str, runs: list) -> None:
    from mpdit_bench.sweeps.costs import THROUGHPUT_NOTE
    from mpdit_bench.sweeps.runner import dry_run_rows

    table = Table(title=f"{name} at scale {scale}: {len(runs)} runs (dry run, nothing executed)")
    for col in ("run", "label", "procs", "params (M)", "GFLOPs true", "GFLOPs paper conv.", "steps x batch",
                "train FLOP", "device-h", "wall-h"):
        table.add_column(col, justify="left" if col in ("run", "label") else "right")
    rows = dry_run_rows(runs)
    for r in rows:
        table.add_row(r["run_id"], r["label"], str(r["nproc"]), _fmt(r["params"] / 1e6, 2), _fmt(r["gflops"], 3),
                      _fmt(r["gflops_paper_convention"], 3), f"{r['steps']} x {r['global_batch']}",
                      f"{r['train_pflop'] * 1e15:.2e}", _fmt(r["device_hours"], 3), _fmt(r["wall_hours"], 3))
    (console if console.is_terminal else Console(width=160)).print(table)  # wide when piped to a file
    wall = sum(r["wall_hours"] for r in rows)
    console.print(f"total: {sum(r['device_hours'] for r in rows):.3f} device-hours, "
                  f"{wall:.3f} wall-hours ({wall * 60:.1f} min) one run at a time, without process start-up. "
                  f"GFLOPs analytic on the meta device (paper convention within 0.2% of the counter's); "
                  f"{THROUGHPUT_NOTE}.")


def _sweep_local(name: str, scale: str, runs: list, results: str, workers: int, live: bool) -> None:
    import subprocess
    from rich.live import Live

    from mpdit_bench.sweeps.runner import run_sweep, status_table

    title = f"{name} ({scale})"
    extra = [subprocess.Popen([sys.executable, "-m", "mpdit_bench", "sweep", *sys.argv[2:], "--workers", "1",
                               "--no-live"], stdout=subprocess.DEVNULL) for _ in range(max(0, workers - 1))]
    if live and console.is_terminal:
        with Live(get_renderable=lambda: status_table(runs, results, title), console=console,
                  refresh_per_second=1):
            result = run_sweep(runs, results)
    else:
        result = run_sweep(runs, results, log=lambda msg: console.print(msg))
    for proc in extra:
        proc.wait()
    console.print(status_table(runs, results, title))
    if result.failed:
        fail(f"{len(result.failed)} run(s) failed; their logs are in {results}/{name}/{scale}/<run>/logs; "
             "run the same command again to retry them", code=1)


def _sweep_slurm(experiment: str, runs: list, results: str, settings: list[str]) -> None:
    from pathlib import Path

    from mpdit_bench.sweeps import slurm as sl
    from mpdit_bench.sweeps.runner import run_dir_of
    from mpdit_bench.sweeps.state import is_finished

    todo = [s for s in runs if not is_finished(run_dir_of(Path(results), s))]
    if not todo:
        console.print("every run is finished; nothing to submit")
        return
    params = {**todo[0].slurm, **parse_set(settings, "--slurm")}
    executor = sl.build_executor(Path(results) / "slurm", params, todo[0].nproc)
    jobs = sl.submit(executor, sl.plan_jobs(experiment, todo, results))
    console.print(f"submitted {len(jobs)} job(s): " + ", ".join(j.job_id for j in jobs))


@app.command()
def search(space: str = typer.Argument(..., help="Search space YAML, e.g. experiments/search_space.yaml"),
           trials: int = typer.Option(10, "--trials", "-n", help="Trials for this worker to run"),
           storage: Optional[str] = typer.Option(None, help="Optuna storage: an RDB URL (sqlite:///x.db, "
                                                 "postgresql://...) or a journal file path ending in .log"),
           results: str = typer.Option("results", help="Results folder for the trials' runs")) -> None:
    """Multi-objective architecture search (quality vs GFLOPs) with Optuna, under a GFLOPs budget."""
    from mpdit_bench.sweeps.search import load_space, run_search

    try:
        spec = load_space(space)
    except ConfigError as err:
        fail(str(err))
    study = run_search(spec, trials, storage=storage, results_dir=results)
    table = Table(title=f"study {study.study_name}: Pareto front")
    table.add_column("trial", justify="right")
    for name in spec.objective_names:
        table.add_column(name, justify="right")
    table.add_column("params")
    for t in study.best_trials:
        table.add_row(str(t.number), *[_fmt(v, 4) for v in t.values], json.dumps(t.params))
    console.print(table)


@app.command()
def report(experiment: Optional[str] = typer.Argument(None, help="Experiment name or YAML (default: all)"),
           results: str = typer.Option("results", help="Results folder holding the runs' record.json"),
           out: str = typer.Option("reports", help="Output folder for markdown and PNG")) -> None:
    """Tables beside the paper's published figures, Pareto and compute plots, sample grids."""
    from mpdit_bench.reports.report import write_reports

    from pathlib import Path

    name, experiments_dir = experiment, Path("experiments")
    if experiment and experiment.endswith((".yaml", ".yml")):
        name, experiments_dir = Path(experiment).stem, Path(experiment).parent
    try:
        written = write_reports(results, out, name, experiments_dir)
    except ConfigError as err:
        fail(str(err))
    for path in written:
        console.print(f"wrote {path}")
    if not written:
        fail(f"no records found under {results}" + (f" for experiment {name}" if name else ""), code=1)


def main() -> None:
    try:
        app()
    except ConfigError as err:  # any command: bad input is reported, not a traceback
        err_console.print(f"[bold red]error:[/] {err}")
        sys.exit(2)


if __name__ == "__main__":
    main()
