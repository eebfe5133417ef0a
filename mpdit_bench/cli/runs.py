"""Run commands: `train`, `sample`, `convert`, `extract-latents`; under torchrun only rank 0 reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mpdit_bench.cli.common import PluginOption, SetOption, console, fail, fmt
from mpdit_bench.cli.kinds import require_kind
from mpdit_bench.config import ConfigError, parse_set


def train(config: str = typer.Argument(..., help="Run config YAML (sections model, model_overrides, data, train)"),
          overrides: Optional[list[str]] = typer.Option(None, "--set", help="section.key=value, e.g. --set train.lr=2e-4"),
          out: Optional[str] = typer.Option(None, "--out", help="Run directory (default runs/<config name>)"),
          plugins: Optional[list[str]] = PluginOption) -> None:
    """Train (or resume) a flow-matching run; works alone or under torchrun."""
    from mpdit_bench.checkpoint import CheckpointError
    from mpdit_bench.data.latents import LatentStoreError
    from mpdit_bench.engine.distributed import is_main_process
    from mpdit_bench.engine.train import TrainingDiverged, load_run_config
    from mpdit_bench.engine.train import train as run_training
    from mpdit_bench.plugins import merged

    require_kind(config, "run config")
    run_cfg = load_run_config(config, overrides or [])
    if plugins:  # kept with the run, so its checkpoints load them wherever they are read
        run_cfg["plugins"] = merged(run_cfg.get("plugins", []), plugins)
    run_dir = Path(out) if out else Path("runs") / Path(config).stem
    try:
        summary = run_training(run_cfg, run_dir)
    except (CheckpointError, LatentStoreError) as err:  # an unreadable checkpoint, a missing latent store
        fail(str(err))
    except TrainingDiverged as err:
        fail(str(err), code=1)
    if is_main_process():
        console.print(f"[bold green]done[/] step {summary['final_step']} loss {fmt(summary['final_loss'], 4)} "
                      f"in {summary['train_seconds']:.0f} s -> {run_dir}")


def sample(ckpt: str = typer.Argument(..., help="Checkpoint (RUN/checkpoints/last.pt)"),
           num: int = typer.Option(..., "--num", "--num-samples",
                                   help="Number of samples (under torchrun write --num-samples: torchrun "
                                        "mistakes --num for its --numa-binding)"),
           out: str = typer.Option("samples.npz", "--out", help="ADM-layout .npz; the PNG grid goes beside it"),
           sampler: Optional[str] = typer.Option(None, help="euler, heun, heun2, sde, sde_sbdm or dopri5 "
                                                            "(default: run config, else euler)"),
           steps: Optional[int] = typer.Option(None, help="Integration steps, or grid points with --grid points "
                                                          "(default: run config, else 50)"),
           grid: Optional[str] = typer.Option(None, help="steps (steps intervals) or points (steps points, the "
                                                         "sources' linspace; default: run config, else steps)"),
           cfg_scale: Optional[str] = typer.Option(None, "--cfg-scale",
                                                   help="Guidance scale (1 = none), or one per stage of a patch "
                                                        "schedule, coarse first, e.g. 1.0,3.0"),
           guidance_interval: Optional[str] = typer.Option(None, "--guidance-interval", help="t_lo,t_hi"),
           seed: Optional[int] = typer.Option(None, help="Seed (per-sample streams)"),
           batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per forward pass"),
           labels: Optional[str] = typer.Option(None, help="random (ADM), balanced or a class index"),
           raw_weights: bool = typer.Option(False, "--raw-weights", help="Use the trained weights, not the EMA"),
           vae: Optional[str] = typer.Option(None, "--vae", help="Local AutoencoderKL folder (latent models)"),
           device: str = typer.Option("auto", help="auto, cpu or cuda"),
           plugins: Optional[list[str]] = PluginOption) -> None:
    """Sample a checkpoint into ADM's .npz layout and a PNG grid; works under torchrun."""
    from mpdit_bench.checkpoint import CheckpointError
    from mpdit_bench.engine.distributed import is_main_process, resolve_device
    from mpdit_bench.engine.sampling import check_options, parse_sample_options, sample_checkpoint

    try:
        options = parse_sample_options({"sampler": sampler, "steps": steps, "grid": grid, "cfg_scale": cfg_scale,
                                        "guidance_interval": guidance_interval, "seed": seed,
                                        "batch_size": batch_size, "labels": labels,
                                        "use_ema": False if raw_weights else None})
        check_options(options, "command line")  # the flags given, before the checkpoint is read
        resolve_device(device, "--device")
    except ConfigError as err:
        fail(str(err))
    try:
        path = sample_checkpoint(ckpt, num, out, vae=vae, device=device, **options)
    except (CheckpointError, FileNotFoundError) as err:
        fail(str(err))
    if is_main_process():
        console.print(f"[bold green]wrote[/] {path} and {path.with_suffix('.png')}")


def convert(checkpoint: str = typer.Argument(..., help="Trained checkpoint without a patch schedule (.pt)"),
            to: str = typer.Option("ppflow", "--to", help="Target: ppflow (patch schedule over time)"),
            out: str = typer.Option(..., "--out", help="New checkpoint file"),
            levels: int = typer.Option(2, "--levels", help="Stages: 2 (2p x 2p, p x p) or 3 (adds p x 2p)"),
            boundaries: Optional[str] = typer.Option(None, help="Stage boundaries in suite t (0 data, 1 noise), "
                                                                "e.g. 0.5 or 0.5,0.25; default PPFlow's"),
            model: Optional[str] = typer.Option(None, "--model", "-m", help="Source preset, when the checkpoint "
                                                                            "has no model_config"),
            level_embed_init: str = typer.Option("zero", "--level-embed-init",
                                                 help="zero (the fine stage reproduces the source) or normal "
                                                      "(N(0, 0.02), PPFlow's)"),
            seed: int = typer.Option(0, "--seed", help="Seed of a normal level embedding"),
            overrides: Optional[list[str]] = SetOption, plugins: Optional[list[str]] = PluginOption) -> None:
    """Initialise a PPFlow model from a trained one: patchify average, unpatchify copy, blocks copied."""
    from mpdit_bench.config import LEVEL_EMBED_INITS

    if to != "ppflow":
        fail(f"--to {to!r} is invalid; allowed: ppflow")
    if levels not in (2, 3):
        fail(f"--levels {levels} is invalid; allowed: 2, 3")
    if level_embed_init not in LEVEL_EMBED_INITS:
        fail(f"--level-embed-init {level_embed_init!r} is invalid; allowed: {', '.join(LEVEL_EMBED_INITS)}")
    from mpdit_bench.ppflow.convert import convert_checkpoint

    bounds = None
    if boundaries is not None:
        try:
            bounds = [float(b) for b in boundaries.split(",")]
        except ValueError:
            fail(f"--boundaries {boundaries!r} is invalid; allowed: numbers in (0, 1), comma separated")
    try:
        with console.status(f"converting {checkpoint}"):
            result = convert_checkpoint(checkpoint, out, levels, model, parse_set(overrides or []), bounds,
                                        level_embed_init, seed)
    except ConfigError as err:
        fail(str(err))
    cfg = result["model_config"]
    console.print(f"wrote {result['out']}: {result['tensors']} tensors{' + ema' if result['ema'] else ''}, "
                  f"patches over t {cfg['time_patch_sizes']} boundaries {cfg['time_boundaries']} "
                  f"(suite t: 0 data, 1 noise), config hash {result['config_hash']}")


def extract_latents(images: str = typer.Option(..., "--images", help="Folder of class sub-folders of images"),
                    vae: str = typer.Option(..., "--vae", help="Local AutoencoderKL folder (e.g. sd-vae-ft-ema)"),
                    out: str = typer.Option(..., "--out", help="Store folder: latents.npy, labels.npy, stats.json"),
                    resolution: int = typer.Option(256, help="Image side after ADM centre crop: 256 or 512"),
                    batch_size: int = typer.Option(32, "--batch-size"),
                    mean_only: bool = typer.Option(False, "--mean", help="Store the posterior mean, not a sample"),
                    seed: int = typer.Option(0, help="Seed of the posterior samples (per image)"),
                    dtype: str = typer.Option("float16", "--dtype",
                                              help="float16 (the suite's, half the disk) or float32 (the MPDiT "
                                                   "authors'; their paper recipes set data.store_dtype: float32)"),
                    device: str = typer.Option("auto", help="auto, cpu or cuda")) -> None:
    """Encode an image folder once with a VAE into one latent store; works under torchrun."""
    from mpdit_bench.data.latents import LatentStoreError
    from mpdit_bench.engine.extract import extract_latents as run_extraction
    from mpdit_bench.engine.distributed import is_main_process

    if resolution not in (256, 512):
        console.print(f"[yellow]note:[/] resolution {resolution}: the paper uses 256 or 512")
    try:
        path = run_extraction(images, vae, out, resolution, batch_size, device, not mean_only, seed, dtype=dtype)
    except LatentStoreError as err:
        fail(str(err))
    if is_main_process():
        console.print(f"[bold green]wrote[/] latent store {path}")
