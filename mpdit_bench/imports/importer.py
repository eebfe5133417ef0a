"""Read a checkpoint in a source's own format and turn it into a suite checkpoint.

The file is read with ``weights_only=True`` (only argparse.Namespace allowed), its format and source are
recognised from its structure and tensor names, the architecture is read from the tensor shapes, every
tensor is checked against the suite model of that architecture, and only then converted. Every refusal
names the file and the reason, and comes before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench import checkpoint
from mpdit_bench.imports import mpdit_authors, ppflow, sit
from mpdit_bench.imports.common import (ImportRefused, check_expect, check_tensors, expected_config,
                                        is_state_dict, matching_preset, plain_args, read_foreign)

SOURCES = {module.NAME: module for module in (mpdit_authors, sit, ppflow)}
COMPILED_PREFIX = "_orig_mod."
FORMATS = ("the MPDiT authors' train.py checkpoint {model, ema, opt, epoch, train_steps, args} (MPDiT or MPDiTv2)",
           "SiT's released state dict (SiT-XL-2-256x256.pt) or its train.py checkpoint {model, ema, opt, args}",
           "PPFlow's released state dict (PPF-XL-2.pt, PPF-XL-3.pt) or its train.py checkpoint {model, ema, opt, args}")
_CONVENTIONS = {
    "mpdit": "t = 0 data, velocity noise - data, raw t into the time embedder: weights renamed only",
    "sit": "t = 0 noise, prediction data - noise, raw t: time embedder's first Linear rewritten for t -> 1 - t, "
           "velocity rows of the output Linear negated; learned-sigma channels kept after the velocity",
    "ppflow": "as SiT, on every stage's output Linear; stage boundaries moved to the suite's t (1 - t); "
              "level embedding row s = stage s, coarse first",
}


def import_checkpoint(path: str | Path, source: str | None = None, expect: str | None = None,
                      num_heads: int | None = None) -> dict[str, Any]:
    """The suite checkpoint (format, step, model, ema, model_config, data_info, ...) equivalent to ``path``.

    ``source``: "mpdit", "sit" or "ppflow" (default: recognised from the tensors); ``expect``: a preset the
    architecture must be (e.g. "SiT-XL/2"); ``num_heads``: the head count where the width does not tell it."""
    path = Path(path)
    if source is not None and source not in SOURCES:
        raise ImportRefused(path, f"source={source!r}; allowed: {', '.join(SOURCES)}")
    obj = read_foreign(path)
    kind, ema, online = _split(obj, path)
    module = _recognise(ema, path, source)
    if kind == "train" and set(obj) != module.TRAIN_KEYS:
        raise ImportRefused(path, f"a {module.NAME} train.py checkpoint has the keys {sorted(module.TRAIN_KEYS)}; "
                                  f"this file has {sorted(obj)}")
    args = plain_args(obj.get("args")) if kind == "train" else None
    cfg = module.architecture(ema, args, path, num_heads, expected_config(expect, path))
    check_expect(path, cfg, expect)
    expected = _expected_shapes(module, cfg)
    check_tensors(path, ema, expected, "the EMA weights" if kind == "train" else "the state dict")
    if online is not None:
        check_tensors(path, online, expected, "the model weights")
    ema_suite = to_suite(module, ema, cfg)
    mean, std = module.latent_normalisation(cfg)
    ckpt: dict[str, Any] = {
        "format": checkpoint.FORMAT, "step": _train_step(obj, path) if kind == "train" else 0,
        "epoch": 0, "batch_in_epoch": 0,
        "model": to_suite(module, online, cfg) if online is not None else ema_suite, "ema": ema_suite,
        "model_config": cfg.to_dict(),
        "data_info": {"name": "latents", "channels": cfg.in_channels, "size": cfg.input_size,
                      "num_classes": cfg.num_classes, "latent_mean": mean, "latent_std": std,
                      "resolution": cfg.input_size * 8},
        "imported_from": {"path": str(path), "source": module.NAME, "format": kind, "args": args,
                          "preset": expect or matching_preset(cfg, module.FAMILY),
                          "conventions": _CONVENTIONS[module.NAME]},
    }
    sample = module.sample_defaults(args)
    if sample:  # the source's guidance, as `sample` reads a run's defaults
        ckpt["run_config"] = {"sample": sample}
    return ckpt


def write_suite_checkpoint(path: str | Path, out: str | Path, source: str | None = None, expect: str | None = None,
                           num_heads: int | None = None) -> dict[str, Any]:
    """Import ``path`` and write the suite checkpoint to ``out`` atomically; returns what was written."""
    out = checkpoint.output_path(out)
    if Path(out).resolve() == Path(path).resolve():
        raise ImportRefused(path, "the output would overwrite the source file; choose another --out")
    ckpt = import_checkpoint(path, source, expect, num_heads)
    written = checkpoint.save_atomic(ckpt, out)
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    return {"out": str(written), "source": ckpt["imported_from"]["source"], "format": ckpt["imported_from"]["format"],
            "preset": ckpt["imported_from"]["preset"], "model_config": ckpt["model_config"],
            "config_hash": cfg.config_hash(), "step": ckpt["step"],
            "tensors": len(ckpt["ema"]), "sample": (ckpt.get("run_config") or {}).get("sample", {})}


def to_suite(module, state: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """A source state dict (checked) -> the suite's state dict of the same function, float32."""
    suite = {ours: state[theirs].detach().clone().float() for theirs, ours in module.source_keys(cfg).items()}
    module.rewrite(suite, cfg)
    return suite


def _train_step(obj: dict[str, Any], path: Path) -> int:
    """The MPDiT authors store train_steps; SiT and PPFlow name the file by it (train.py's {step:07d}.pt)."""
    if isinstance(obj.get("train_steps"), int):
        return obj["train_steps"]
    return int(path.stem) if path.stem.isdigit() else 0


def _split(obj: Any, path: Path) -> tuple[str, Mapping[str, torch.Tensor], Mapping[str, torch.Tensor] | None]:
    """("released" | "train", EMA state dict, online state dict or None)."""
    if isinstance(obj, dict) and obj.get("format") == checkpoint.FORMAT:
        raise ImportRefused(path, "already a suite checkpoint (format "
                                  f"{checkpoint.FORMAT!r}): use it as it is")
    if is_state_dict(obj):
        return "released", uncompiled(obj), None
    if isinstance(obj, dict) and is_state_dict(obj.get("ema")) and is_state_dict(obj.get("model")):
        return "train", uncompiled(obj["ema"]), uncompiled(obj["model"])
    found = f"a dict with keys {sorted(map(str, obj))[:12]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    raise ImportRefused(path, f"in none of the formats import reads ({'; '.join(FORMATS)}); it holds {found}")


def uncompiled(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """The weights of a model saved through torch.compile's wrapper (a train.py run with --compile: every key
    under ``_orig_mod.``) under the network's own names, as the MPDiT authors' sample.py strips them."""
    if all(k.startswith(COMPILED_PREFIX) for k in state):
        return {k[len(COMPILED_PREFIX):]: v for k, v in state.items()}
    return state


def _recognise(state: Mapping[str, torch.Tensor], path: Path, source: str | None):
    found = [m for m in SOURCES.values() if m.recognises(state)]
    if not found:
        raise ImportRefused(path, f"tensors of none of the sources {list(SOURCES)} (first keys: {sorted(state)[:6]})")
    module = found[0]
    if source is not None and module.NAME != source:
        raise ImportRefused(path, f"source={source!r} but the tensors are {module.NAME}'s")
    return module


def _expected_shapes(module, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Their key -> the shape of the suite tensor it becomes."""
    from mpdit_bench.models import build_model

    with torch.device("meta"):
        suite = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    names = module.source_keys(cfg)
    if sorted(names.values()) != sorted(suite):  # the mapping must cover the suite model exactly
        raise RuntimeError(f"{module.NAME} key map does not cover the suite model: "
                           f"{sorted(set(suite) ^ set(names.values()))}")
    return {theirs: suite[ours] for theirs, ours in names.items()}
