"""One JSON record per finished run, and loading all of them into pandas DataFrames: one row per run
(`load_records`), one row per run and point of its curve along training (`load_curves`)."""

from __future__ import annotations

import json
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from mpdit_bench.files import sha256_file
from mpdit_bench.sweeps.curve import read_points
from mpdit_bench.sweeps.runspec import RunSpec
from mpdit_bench.sweeps.pipeline import read_metrics_csv

# 2: seed, smoke, intervals, bootstrap_replicates, heldout. 3: ``curve`` holds the evaluated points along
# training (`sweeps.curve`), with ``curve_missing``; the metrics.csv rows moved to ``training_log``.
RECORD_VERSION = 3


def _sha256_if_small(path: Path, limit_mb: int = 4096) -> str | None:
    """Hash of a run's file; None when it is missing or too large to hash in passing."""
    if not path.is_file() or path.stat().st_size > limit_mb * 2**20:
        return None
    return sha256_file(path)


@lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # hardware info is descriptive only
        pass
    return info


@lru_cache(maxsize=1)
def software() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("mpdit-bench", "torch", "torchvision", "torch-fidelity", "numpy", "optuna"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        import subprocess

        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except Exception:
        out["git_commit"] = None
    return out


def images_seen(spec: RunSpec, summary: dict[str, Any]) -> int | None:
    """From the training summary; else final step x global batch (the same number by definition)."""
    if summary.get("images_seen") is not None:
        return int(summary["images_seen"])
    step = summary.get("step", summary.get("final_step"))
    return int(step) * int(spec.train["global_batch"]) if step is not None else None


def build_record(spec: RunSpec, state: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Everything about one finished run: what it was, what it cost, what it scored."""
    phases = state["phases"]
    count = phases.get("count", {}).get("result", {})
    train = phases.get("train", {}).get("result", {})
    evaluation = dict(phases.get("evaluate", {}).get("result", {}))
    heldout = dict(phases.get("heldout", {}).get("result", {}))
    metrics = {k: v for k, v in {**evaluation, **heldout}.items()  # numbers and nulls; lists stay below
               if k not in ("bootstrap", "bootstrap_s", "heldout_s")
               and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))}
    intervals = {k[: -len("_ci95")]: v for k, v in {**evaluation, **heldout}.items() if k.endswith("_ci95")}
    replicates = {**(evaluation.get("bootstrap_replicates") or {}), **(heldout.get("bootstrap_replicates") or {})}
    hashes = {"checkpoint_sha256": _sha256_if_small(run_dir / "checkpoints" / "last.pt"),
              "samples_sha256": _sha256_if_small(run_dir / "samples.npz"),
              "inception_weights_sha256": evaluation.get("inception_weights_sha256"),
              "reference_sha256": evaluation.get("reference_sha256")}
    sample = phases.get("sample", {}).get("result", {})
    return {
        "record_version": RECORD_VERSION,
        "run_id": spec.run_id, "experiment": spec.experiment, "scale": spec.scale, "label": spec.label,
        "model": spec.model, "axes": spec.axes, "spec": spec.to_dict(),
        "params": count.get("params"), "gflops": count.get("gflops"),
        "gflops_paper_convention": count.get("gflops_paper_convention"),
        "images_seen": images_seen(spec, train), "train": train,
        "seed": spec.seed, "smoke": spec.smoke,
        "metrics": metrics, "intervals": intervals, "bootstrap_replicates": replicates,
        "evaluation": {k: v for k, v in evaluation.items() if k != "bootstrap_replicates"},
        "heldout": {k: v for k, v in heldout.items() if k != "bootstrap_replicates"},
        "training_log": read_metrics_csv(run_dir / "metrics.csv"),
        "curve": read_points(run_dir),
        "curve_missing": list((phases.get("curve", {}).get("result") or {}).get("missing") or []),
        "timings": {name: s.get("seconds") for name, s in phases.items()},
        "sample_grid": str(run_dir / sample["grid"]) if sample.get("grid") else None,
        "run_dir": str(run_dir),
        "hardware": dict(hardware()), "software": dict(software()), "hashes": hashes,
    }


def training_log(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics.csv rows of a record (step, loss, val_loss, ...), of any record version."""
    if "training_log" in record:
        return record["training_log"] or []
    return record.get("curve") or []  # records before version 3 kept them under ``curve``


def curve_points(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluated points along training of a record: the ``curve`` entries with ``metrics`` (before
    version 3, ``curve`` held the training-loss rows, which have none)."""
    return [p for p in record.get("curve") or [] if isinstance(p, dict) and isinstance(p.get("metrics"), dict)]


def recorded_curve_steps(record: dict[str, Any]) -> set[int]:
    """The steps a record's curve accounts for: its computed points and the points it reports missing."""
    return {p["step"] for p in curve_points(record)} | {m["step"] for m in record.get("curve_missing") or []}


def load_records(results_dir: str | Path, experiment: str | None = None):
    """All records under ``results_dir`` as a DataFrame: one row per run, metrics as ``metric.<name>``,
    their 95 % intervals as ``ci95_low.<name>`` / ``ci95_high.<name>``, the training seed as ``seed``.

    Missing metrics are NaN (never 0); the full record stays in the ``record`` column.
    """
    import pandas as pd

    rows = []
    for path in sorted(Path(results_dir).rglob("record.json")):
        rec = json.loads(path.read_text())
        if experiment and rec.get("experiment") != experiment:
            continue
        row = {k: rec.get(k) for k in ("run_id", "experiment", "scale", "label", "model", "params", "gflops",
                                        "gflops_paper_convention", "images_seen", "sample_grid", "run_dir")}
        for name, value in (rec.get("metrics") or {}).items():
            if value is None or isinstance(value, (int, float)):
                row[f"metric.{name}"] = float("nan") if value is None else value
        for name, (low, high) in (rec.get("intervals") or {}).items():
            row[f"ci95_low.{name}"], row[f"ci95_high.{name}"] = low, high
        row["seed"] = rec.get("seed")
        row["train_seconds"] = (rec.get("timings") or {}).get("train")
        row["record"] = rec
        rows.append(row)
    return pd.DataFrame(rows)


def load_curves(results_dir: str | Path, experiment: str | None = None):
    """Every record's curve along training as a DataFrame: one row per run and point, with the run's
    identity (run_id, experiment, scale, label, group, seed, smoke), the point's ``step``, ``images_seen``,
    ``train_flops``, ``wall_s``, ``final`` (the run's last step), its metrics as ``metric.<name>`` and their
    95 % intervals as ``ci95_low.<name>`` / ``ci95_high.<name>`` (NaN where missing)."""
    import pandas as pd

    rows = []
    for path in sorted(Path(results_dir).rglob("record.json")):
        rec = json.loads(path.read_text())
        if experiment and rec.get("experiment") != experiment:
            continue
        points = curve_points(rec)
        last = max((p["step"] for p in points), default=None)
        run = {"run_id": rec.get("run_id"), "experiment": rec.get("experiment"), "scale": rec.get("scale"),
               "label": rec.get("label"), "group": (rec.get("spec") or {}).get("group"), "seed": rec.get("seed"),
               "smoke": rec.get("smoke")}
        for point in points:
            row = {**run, **{k: point.get(k) for k in ("step", "images_seen", "train_flops", "wall_s")},
                   "final": point["step"] == last}
            for name, value in (point.get("metrics") or {}).items():
                row[f"metric.{name}"] = float("nan") if value is None else value
            for name, (low, high) in (point.get("intervals") or {}).items():
                row[f"ci95_low.{name}"], row[f"ci95_high.{name}"] = low, high
            rows.append(row)
    return pd.DataFrame(rows)
