"""Where a run starts: ``train.init_from``, imported first when ``train.init_source`` names the source's
format, and converted to the run's patch schedule when it is the run's model without one (PPFlow's start:
a PPF-XL-2 run from SiT-XL/2's released file, as PPFlow's ``--initialize_from``).

A run that trains fine-tunes these weights from step 0. A run that does not (``train.steps: 0``) takes the
start as its checkpoint, so that the sample and evaluate phases take a released model like a trained one.

``init_from: random`` (with ``init_source``) writes a randomly initialised checkpoint of the run's model (of
the model it is converted from, for a format without stages) in that source's format into the run
directory first: the CPU smoke of the same path.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mpdit_bench import checkpoint
from mpdit_bench.config import INIT_KEYS, ConfigError, ModelConfig
from mpdit_bench.files import write_text_atomic

RANDOM = "random"  # init_from value: a random checkpoint in init_source's format, written at run time
SCHEDULE_FORMATS = ("ppflow",)  # source formats whose networks have stages


def source_file(tc: dict[str, Any], cfg: ModelConfig, run_dir: Path) -> Path:
    """The file the run starts from; ``random`` is written here, in the source's format."""
    if tc["init_from"] != RANDOM:
        return Path(tc["init_from"])
    from mpdit_bench.imports.export import write_source_checkpoint
    from mpdit_bench.ppflow.convert import schedule_removed

    model = cfg if tc["init_source"] in SCHEDULE_FORMATS or not cfg.time_patch_sizes else schedule_removed(cfg)
    return write_source_checkpoint(model, tc["init_source"], run_dir / f"random_{tc['init_source']}.pt",
                                   seed=tc["seed"])


def function_differences(have: dict[str, Any], cfg: ModelConfig) -> dict[str, Any]:
    """Keys (other than how untrained weights are drawn) where a checkpoint's config is not ``cfg``."""
    want = cfg.to_dict()
    return {k: have.get(k) for k in want if k not in INIT_KEYS and have.get(k) != want[k]}


def starting_point(tc: dict[str, Any], cfg: ModelConfig, run_dir: Path) -> dict[str, Any]:
    """The suite checkpoint (model, ema, model_config, ...) of ``train.init_from`` for a run of ``cfg``:
    imported from ``train.init_source``'s format, and converted to ``cfg``'s patch schedule when it is
    ``cfg``'s model without one (the level embedding drawn with ``train.seed``)."""
    from mpdit_bench.imports.importer import import_checkpoint

    path = source_file(tc, cfg, run_dir)
    ckpt = (import_checkpoint(path, tc["init_source"], num_heads=cfg.num_heads) if tc["init_source"]
            else checkpoint.load(path))
    # resolved, so that a checkpoint written before a key existed reads (and is kept) with that key's default
    ckpt["model_config"] = have = ModelConfig.from_dict(ckpt["model_config"], source=f"{path} model_config").to_dict()
    if cfg.time_patch_sizes and not have.get("time_patch_sizes"):
        from mpdit_bench.ppflow.convert import convert_isotropic_to_ppflow, schedule_removed

        base = schedule_removed(cfg)
        differ = function_differences(have, base)
        if differ:
            raise ConfigError("train.init_from", str(path), f"the run's model without its patch schedule, to "
                              f"convert to it; it has {differ} where that model has "
                              f"{ {k: base.to_dict()[k] for k in differ} }")
        for key in ("model", "ema"):
            if isinstance(ckpt.get(key), dict):
                ckpt[key] = convert_isotropic_to_ppflow(ckpt[key], cfg, seed=tc["seed"])
        ckpt["converted_from"] = {"path": str(path), "to": "ppflow", "levels": len(cfg.time_patch_sizes),
                                  "level_embed_init": cfg.level_embed_init}
        ckpt["model_config"] = have = cfg.to_dict()
    differ = function_differences(have, cfg)
    if differ:
        raise ConfigError("train.init_from", str(path), f"a checkpoint of the run's model; it has {differ} where the "
                          f"run has { {k: cfg.to_dict()[k] for k in differ} } (set model / model_overrides to match)")
    return ckpt


def start_checkpoint(run_cfg: dict[str, Any], cfg: ModelConfig, run_dir: Path) -> dict[str, Any]:
    """The starting point as the checkpoint of a run that does not train, carrying the run's config: the
    run's sampling keys over those the import found (the source's guidance)."""
    ckpt = starting_point(run_cfg["train"], cfg, run_dir)
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


__all__ = ["RANDOM", "function_differences", "start_checkpoint", "start_without_training", "starting_point"]
