"""`bench train`, `bench sample` (model A vs B at the same batch) and `bench gpu` (the whole GPU check)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mpdit_bench.cli.common import PluginOption, SetOption, fail
from mpdit_bench.cli.render import print_comparison
from mpdit_bench.config import parse_set

app = typer.Typer(no_args_is_help=True, help="Throughput and peak memory of model A vs B: `bench train` "
                  "(steps/s), `bench sample` (images/s), `bench gpu` (the whole GPU check: training, "
                  "sampling, memory, MFU, evaluation; docs/PERFORMANCE.md).")

ModelA = typer.Option(..., "--model", "-m", help="Model A (preset or shorthand)")
ModelB = typer.Option(..., "--vs", help="Model B (preset or shorthand)")
Batch = typer.Option(8, "--batch", help="Batch per step (the same for both)")
Resolution = typer.Option(256, help="Image resolution in pixels (latent = px / 8)")
Warmup = typer.Option(2, help="Untimed iterations")
Reps = typer.Option(5, help="Timed repetitions")
Iters = typer.Option(5, help="Iterations per repetition")
Device = typer.Option("auto", help="auto, cpu or cuda")
Threads = typer.Option(None, help="torch CPU threads (1 is fastest on shared cores)")
OutDir = typer.Option("results/bench", "--out-dir", help="Where the JSON goes")


def _set_threads(threads: Optional[int]) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _check_settings(models: tuple[str, ...], overrides: dict, device: str, resolution: int = 256,
                    **counts: int) -> None:
    """Every flag before anything is built or timed: both models, the device, the counts (0 warm-up and 0
    threads allowed: 0 threads is torch's default)."""
    from mpdit_bench.engine.distributed import resolve_device
    from mpdit_bench.models import model_config

    for flag, value in counts.items():
        least = 0 if flag in ("warmup", "threads") else 1
        if value is not None and value < least:
            fail(f"--{flag.replace('_', '-')} {value} is invalid; allowed: an integer >= {least}")
    for name in models:
        model_config(name, resolution, **overrides)
    resolve_device(device, "--device")


def _compare(mode: str, model: str, vs: str, batch: int, overrides: Optional[list[str]], out_dir: str,
             threads: Optional[int], **settings) -> None:
    from mpdit_bench.bench.compare import compare

    extra = parse_set(overrides or [])
    _check_settings((model, vs), extra, batch=batch, threads=threads, **settings)
    _set_threads(threads)
    print_comparison(compare(mode, model, vs, batch, extra, out_dir, **settings))


@app.command()
def train(model: str = ModelA, vs: str = ModelB, batch: int = Batch, overrides: Optional[list[str]] = SetOption,
          resolution: int = Resolution, warmup: int = Warmup, reps: int = Reps, iters: int = Iters,
          device: str = Device, threads: Optional[int] = Threads, out_dir: str = OutDir,
          plugins: Optional[list[str]] = PluginOption) -> None:
    """Training steps/s, images/s and peak memory of model A vs B: one AdamW step (bf16 autocast on GPU)."""
    _compare("train", model, vs, batch, overrides, out_dir, threads, resolution=resolution, warmup=warmup,
             reps=reps, iters=iters, device=device)


@app.command()
def sample(model: str = ModelA, vs: str = ModelB, batch: int = Batch, overrides: Optional[list[str]] = SetOption,
           resolution: int = Resolution, warmup: int = typer.Option(2, help="Untimed short trajectories"),
           reps: int = Reps, iters: int = typer.Option(1, help="Whole trajectories per repetition"),
           sample_steps: int = typer.Option(250, "--sample-steps", help="Trajectory length for images/s"),
           device: str = Device, threads: Optional[int] = Threads, out_dir: str = OutDir,
           plugins: Optional[list[str]] = PluginOption) -> None:
    """Sampling images/s, trajectory GFLOPs and peak memory of model A vs B: whole trajectories of the engine's
    sampler (Euler, --sample-steps steps, CFG, a patch schedule's stages)."""
    _compare("sample", model, vs, batch, overrides, out_dir, threads, resolution=resolution, warmup=warmup,
             reps=reps, iters=iters, sample_steps=sample_steps, device=device)


@app.command()
def gpu(model: str = typer.Option("MPDiT-XL", "--model", "-m", help="Model A (preset or shorthand)"),
        vs: str = typer.Option("SiT-XL/2", "--vs", help="Model B (preset or shorthand)"),
        overrides: Optional[list[str]] = SetOption,
        device: str = Device, threads: Optional[int] = Threads,
        out_dir: str = typer.Option("results/gpu_check", "--out-dir", help="Where the JSON and markdown go"),
        small: bool = typer.Option(False, "--small", help="The CPU smoke size (tiny models, a few steps)"),
        budget_s: float = typer.Option(420.0, "--budget-s", help="Stop and write what was measured after this "
                                       "many seconds"),
        no_compile: bool = typer.Option(False, "--no-compile", help="Skip the torch.compile rows"),
        inception_weights: str = typer.Option("auto", "--inception-weights", help="auto (the converted real "
                                              "weights where installed, else seeded), real, seeded, or a PATH"),
        settings: Optional[list[str]] = typer.Option(None, "--setting", help="KEY=VALUE of the check's settings "
                                                     "(repeatable), e.g. --setting common_batch=64")) -> None:
    """The whole GPU check within a time budget: training, sampling, memory, MFU, evaluation."""
    from mpdit_bench.bench.gpu_check import run_gpu_check
    from mpdit_bench.bench.report import markdown

    extra = parse_set(settings or [], "--setting")
    if overrides:
        extra["overrides"] = parse_set(overrides)
    if budget_s <= 0:
        fail(f"--budget-s {budget_s:g} is invalid; allowed: a number of seconds > 0")
    if inception_weights not in ("auto", "real", "seeded") and not Path(inception_weights).is_file():
        fail(f"--inception-weights {inception_weights!r} is invalid; allowed: auto, real, seeded, or an existing "
             "weights file")
    _check_settings((model, vs), extra.get("overrides", {}), device, threads=threads)
    _set_threads(threads)
    result = run_gpu_check(out_dir, (model, vs), device, small, budget_s, not no_compile, inception_weights, **extra)
    print(markdown(result), end="")
    print(f"wrote {' and '.join(result['paths'])}")
