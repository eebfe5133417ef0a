"""The GPU check (`mpdit-bench bench gpu`, docs/PERFORMANCE.md): training, sampling and evaluation throughput
of model A vs B on one accelerator, in one process, within one time budget. Every result is written as soon
as it is measured, so a run stopped by the budget (or killed) still leaves what it had. Its phases, in order:

    peak                    the chip's matmul rate (the MFU denominator)
    eager MODEL             per model: training at the common batch, a kernel profile, the largest batch that
                            fits and training there, then sampling in fp32 (TF32) and under bf16 autocast
    eval                    Inception features of the same images on the device and on the CPU
    compile MODEL common    per model, under torch.compile: training at the common batch,
    compile MODEL largest   then at the largest batch the eager search found

What each phase measures, and how: ``bench.measure``; the targets and the markdown: ``bench.report``.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from mpdit_bench.bench.budget import Budget, BudgetExceeded
from mpdit_bench.bench.measure import (engine_trainer, environment, eval_check, largest_training_batch,
                                       matmul_rate, measure_sampling, measure_train, profile_steps)
from mpdit_bench.bench.meters import free_memory, resolve_device
from mpdit_bench.bench.report import write_report
from mpdit_bench.config import ConfigError
from mpdit_bench.engine.train import Trainer
from mpdit_bench.models import model_config

# the full-size check (one H200) and the CPU smoke run of the same code at a tiny size
FULL = {"overrides": {}, "common_batch": 128, "batch_limit": 4096, "bisect": 2, "warmup": 2, "iters": 5,
        "matmul_n": 8192, "matmul_reps": 20, "sample_batch": 256, "sample_steps": 10, "cfg_scale": 4.0,
        "eval_images": 1000, "eval_size": 256, "eval_batch": 100, "profile_steps": 3, "compile_backend": "inductor"}
SMALL = {"overrides": {"hidden_size": 32, "num_heads": 2, "input_size": 8}, "common_batch": 2, "batch_limit": 8,
         "bisect": 1, "warmup": 1, "iters": 2, "matmul_n": 256, "matmul_reps": 3, "sample_batch": 2,
         "sample_steps": 2, "cfg_scale": 4.0, "eval_images": 1, "eval_size": 32, "eval_batch": 1,
         "profile_steps": 1, "compile_backend": "eager"}
SMALL_DEPTH_DIVISOR = 8  # small mode: each level keeps depth // 8 blocks (at least one), MPDiT-XL (22, 6) -> (2, 1)
OOM_RETRIES = 3  # after an out-of-memory row, this many more tries at 7/8 of the batch


def model_overrides(name: str, small: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """The model config overrides of ``name`` in this check: in small mode, fewer blocks per level too."""
    if not small or "depths" in overrides:
        return dict(overrides)
    depths = model_config(name).depths
    return {**overrides, "depths": [max(1, d // SMALL_DEPTH_DIVISOR) for d in depths]}


def check_settings(small: bool, settings: dict[str, Any]) -> dict[str, Any]:
    """FULL (or SMALL) with ``settings`` over it; model ``overrides`` are merged key by key."""
    unknown = sorted(set(settings) - set(FULL))
    if unknown:
        raise ConfigError(unknown[0], settings[unknown[0]], ", ".join(FULL), "GPU check settings (--setting)")
    base = SMALL if small else FULL
    return {**base, **settings, "overrides": {**base["overrides"], **settings.get("overrides", {})}}


def smaller_batch(batch: int, floor: int) -> int:
    """7/8 of ``batch`` (on a multiple of 8 from 64 up), never below ``floor``."""
    seven_eighths = batch * 7 // 8
    return max(floor, seven_eighths - seven_eighths % 8 if batch >= 64 else seven_eighths)


class GpuCheck:
    """One run of the check: its settings, its result (written after every measurement) and its phases."""

    def __init__(self, out_dir: str | Path, models: tuple[str, str], dev: torch.device, small: bool,
                 budget_s: float, settings: dict[str, Any], inception_weights: str, workdir: Path):
        self.out, self.models, self.dev, self.small = Path(out_dir), tuple(models), dev, small
        self.settings, self.inception_weights, self.workdir = settings, inception_weights, workdir
        self.started = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self.result: dict[str, Any] = {
            "models": list(models), "small": small, "budget_s": budget_s, "settings": settings,
            "environment": environment(dev), "peak": None, "train": [], "batch_search": [], "sample": [],
            "eval": None, "profile": {}, "targets": [], "skipped": [], "errors": [], "phase_s": {}}

    def save(self) -> list[Path]:
        self.result["elapsed_s"] = time.monotonic() - self.started
        self.result["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return write_report(self.result, self.out)

    def phases(self, compile: bool) -> list[tuple[str, Callable[[], None]]]:
        phases = [("peak", self.peak)]
        phases += [(f"eager {m}", partial(self.eager, m)) for m in self.models]
        phases.append(("eval", self.evaluation))
        if compile:
            phases += [(f"compile {m} common", partial(self.compiled, m, "common")) for m in self.models]
            phases += [(f"compile {m} largest", partial(self.compiled, m, "largest")) for m in self.models]
        return phases

    def run_phase(self, label: str, phase: Callable[[], None], budget: Budget) -> None:
        """Run one phase, recording what stopped it: the budget, or an error (one failed phase must not
        lose the others' results; only a failed matmul-rate phase, the MFU denominator, stops the check)."""
        if budget.left() <= 0:
            self.result["skipped"].append(f"{label} (time budget)")
            return
        t0 = time.monotonic()
        try:
            phase()
        except Exception as err:  # noqa: BLE001
            # torch.compile re-raises the budget's alarm wrapped in its own error types
            if isinstance(err, BudgetExceeded) or budget.left() <= 0:
                self.result["skipped"].append(f"{label} (stopped by the time budget)")
            elif label == "peak":
                raise
            else:
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                self.result["errors"].append(f"{label}: {type(err).__name__}: {first}")
            free_memory(self.dev)
        self.result["phase_s"][label] = time.monotonic() - t0
        self.save()

    # ---- the phases ---------------------------------------------------------------------------------------
    def peak(self) -> None:
        self.result["peak"] = matmul_rate(self.dev, self.settings["matmul_n"], self.settings["matmul_reps"])

    def eager(self, name: str) -> None:
        s = self.settings
        tr = self.trainer(name, None)
        try:
            s["common_batch"] = self.train_row(tr, name, "eager", "common", s["common_batch"])["batch"]
            self.result["profile"][name] = profile_steps(tr, s["common_batch"], s["profile_steps"])
            self.save()
            search = largest_training_batch(tr, s["common_batch"], s["batch_limit"], s["bisect"])
            self.result["batch_search"].append({"model": name, "compile": "eager", **search})
            self.save()
            if search["batch"] != s["common_batch"]:
                self.train_row(tr, name, "eager", "largest", search["batch"], floor=s["common_batch"])
            for bf16 in ((False, True) if self.dev.type == "cuda" else (False,)):
                row = measure_sampling(tr.ema, tr.mcfg, s["sample_batch"], s["sample_steps"], s["cfg_scale"],
                                       self.dev, bf16)
                self.result["sample"].append({"model": name, **row})
                self.save()
        finally:
            del tr
            free_memory(self.dev)

    def evaluation(self) -> None:
        s = self.settings
        self.result["eval"] = eval_check(self.dev, s["eval_images"], s["eval_size"], s["eval_batch"],
                                         self.inception_weights, self.workdir)

    def compiled(self, name: str, kind: str) -> None:
        common = self.settings["common_batch"]
        if kind == "common":
            batch = common
        else:
            batch = next(x for x in self.result["batch_search"] if x["model"] == name)["batch"]
            if batch == common:
                return
        tr = self.trainer(name, self.settings["compile_backend"])
        try:
            self.train_row(tr, name, "compile", kind, batch, floor=1 if kind == "common" else common)
        finally:
            del tr
            torch._dynamo.reset()
            free_memory(self.dev)

    # ---- helpers of the phases ----------------------------------------------------------------------------
    def trainer(self, name: str, compile_backend: str | None) -> Trainer:
        overrides = model_overrides(name, self.small, self.settings["overrides"])
        return engine_trainer(name, overrides, self.dev, compile_backend, self.workdir)

    def train_row(self, tr: Trainer, name: str, mode: str, kind: str, batch: int, floor: int = 1) -> dict[str, Any]:
        """Measure at ``batch``; after an out-of-memory row, again at a smaller batch (`smaller_batch`), at
        most OOM_RETRIES times; every row is kept."""
        for _ in range(1 + OOM_RETRIES):
            row = {"model": name, "compile": mode, "kind": kind,
                   **measure_train(tr, batch, self.settings["warmup"], self.settings["iters"],
                                   self.result["peak"]["flops_per_s"])}
            self.result["train"].append(row)
            self.save()
            smaller = smaller_batch(batch, floor)
            if not row["oom"] or smaller >= batch or smaller < 1:
                break
            batch = smaller
        return row


def run_gpu_check(out_dir: str | Path, models: tuple[str, str] = ("MPDiT-XL", "SiT-XL/2"), device: str = "auto",
                  small: bool = False, budget_s: float = 420.0, compile: bool = True,
                  inception_weights: str = "auto", **settings: Any) -> dict[str, Any]:
    """Run every phase of the check within ``budget_s`` seconds; JSON + markdown in ``out_dir``, rewritten
    after each measurement. ``settings`` override FULL / SMALL keys (e.g. common_batch=64)."""
    checked = check_settings(small, settings)
    with tempfile.TemporaryDirectory() as tmp:
        check = GpuCheck(out_dir, models, resolve_device(device), small, budget_s, checked, inception_weights,
                         Path(tmp))
        with Budget(budget_s - (time.monotonic() - check.started)) as budget:
            for label, phase in check.phases(compile):
                check.run_phase(label, phase, budget)
    check.result["paths"] = [str(path) for path in check.save()]
    return check.result


__all__ = ["FULL", "SMALL", "GpuCheck", "check_settings", "model_overrides", "run_gpu_check"]
