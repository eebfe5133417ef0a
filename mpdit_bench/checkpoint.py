"""Checkpoints: everything a run needs to continue bit for bit, written atomically, read safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` reads it without unpickling arbitrary objects:

    format, step, epoch, batch_in_epoch   where training stands (data position = batch within epoch)
    model, ema, optimizer                 state dicts
    rng                                   one {cpu, cuda} entry per rank (torch RNG byte tensors)
    run_config, model_config              the resolved configs (to rebuild the model for sampling); the
                                          run config's ``plugins`` are loaded when the file is read, so its
                                          model can be built wherever it is read
    data_info                             what sampling needs about the data (channels, latent stats)
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mpdit_bench import plugins
from mpdit_bench.files import save_torch_atomic
from mpdit_bench.validation import ConfigError

FORMAT = "mpdit-bench-checkpoint-v1"
REQUIRED = ("format", "step", "model", "model_config")
SUFFIXES = (".pt", ".pth")


def output_path(out: str | Path, option: str = "--out") -> Path:
    """A checkpoint file to write, checked before any work: a .npz or .yaml there is a mistaken argument."""
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise ConfigError(option, str(out), "a checkpoint file ending in " + " or ".join(SUFFIXES))
    return out


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch RNG state (CPU, and the CUDA device it uses)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    return save_torch_atomic(obj, path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with weights_only=True; truncated, corrupted or foreign files raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupted file?): {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}. Use an earlier checkpoint "
            f"(checkpoints/step_*.pt) or restart the run.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: key 'format' = {found!r} is not an mpdit-bench checkpoint; allowed: {FORMAT!r}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks the keys {missing}; required: {list(REQUIRED)}")
    load_plugins(ckpt, path)
    return ckpt


def load_plugins(ckpt: dict[str, Any], path: str | Path) -> None:
    """Import the plugins the checkpoint's run config lists: the components of its model config."""
    run_config = ckpt.get("run_config")
    if isinstance(run_config, dict) and run_config.get("plugins"):
        plugins.load(plugins.check_list(run_config["plugins"], "run_config.plugins", str(path)),
                     "run_config.plugins", str(path))


def weight_mismatch(weights: Any, expected: dict[str, tuple[int, ...]]) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, "key (found) vs (expected)" for shapes) of ``weights`` against the
    ``expected`` key -> shape table of a model; three empty lists when they fit."""
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    reshaped = sorted(f"{k} {tuple(weights[k].shape)} vs {shape}" for k, shape in expected.items()
                      if k in weights and tuple(weights[k].shape) != shape)
    return missing, unexpected, reshaped


__all__ = ["CheckpointError", "FORMAT", "load", "load_plugins", "rng_state", "save_atomic", "set_rng_state",
           "weight_mismatch"]
