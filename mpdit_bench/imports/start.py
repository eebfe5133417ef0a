"""A run that does not train (``train.steps: 0``): its checkpoint is ``train.init_from`` as it is, imported
first when ``train.init_source`` names the source's format, so that the sample and evaluate phases take a
released model like a trained one.

``init_from: random`` (with ``init_source``) writes a randomly initialised checkpoint of the run's model in
that source's format into the run directory first: the CPU smoke of the released-checkpoint path.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mpdit_bench import checkpoint
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.files import write_text_atomic
from mpdit_bench.imports.common import ARCHITECTURE_KEYS

RANDOM = "random"  # init_from value: a random checkpoint in init_source's format, written at run time


def source_file(tc: dict[str, Any], cfg: ModelConfig, run_dir: Path) -> Path:
    """The file the run starts from; ``random`` is written here, in the source's format."""
    if tc["init_from"] != RANDOM:
        return Path(tc["init_from"])
    from mpdit_bench.imports.export import write_source_checkpoint

    return write_source_checkpoint(cfg, tc["init_source"], run_dir / f"random_{tc['init_source']}.pt",
                                   seed=tc["seed"])


def start_checkpoint(run_cfg: dict[str, Any], cfg: ModelConfig, run_dir: Path) -> dict[str, Any]:
    """The suite checkpoint of ``train.init_from``, checked to be the run's model, carrying the run's config:
    the run's sampling keys over those the import found (the source's guidance)."""
    from mpdit_bench.imports.importer import import_checkpoint

    tc = run_cfg["train"]
    path = source_file(tc, cfg, run_dir)
    ckpt = (import_checkpoint(path, tc["init_source"], num_heads=cfg.num_heads) if tc["init_source"]
            else checkpoint.load(path))
    have = ckpt["model_config"]
    differ = {k: have.get(k) for k in ARCHITECTURE_KEYS + ("time_embed_scale",) if have.get(k) != cfg.to_dict()[k]}
    if differ:
        raise ConfigError("train.init_from", str(path), f"a checkpoint of the run's model; it has {differ} where the "
                          f"run has { {k: cfg.to_dict()[k] for k in differ} }")
    imported_sample = (ckpt.get("run_config") or {}).get("sample") or {}
    ckpt["run_config"] = {**run_cfg, "sample": {**imported_sample, **run_cfg.get("sample", {})}}
    if run_cfg["data"]["name"] != "latents":  # a smoke model on images: what it generates is the run's data
        ckpt["data_info"] = {"name": run_cfg["data"]["name"], "channels": cfg.in_channels, "size": cfg.input_size,
                             "num_classes": cfg.num_classes}
    return ckpt


def start_without_training(run_cfg: dict[str, Any], cfg: ModelConfig, out_dir: str | Path) -> dict[str, Any]:
    """Write RUN/checkpoints/last.pt and RUN/summary.json for a run of ``train.steps: 0``; returns the summary."""
    run_dir = Path(out_dir)
    began = time.perf_counter()
    ckpt = start_checkpoint(run_cfg, cfg, run_dir)
    checkpoint.save_atomic(ckpt, run_dir / "checkpoints" / "last.pt")
    summary = {"final_step": int(ckpt.get("step", 0)), "final_loss": None, "train_seconds": 0.0, "trained": False,
               "init_from": run_cfg["train"]["init_from"], "init_source": run_cfg["train"]["init_source"],
               "import_seconds": time.perf_counter() - began}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


__all__ = ["RANDOM", "start_checkpoint", "start_without_training"]
