"""Hand-made record.json files for report tests, in the sweep's layout and record format.

A curve point is ``{step, images_seen, train_flops, wall_s, metrics, intervals}``; a record without
``curve`` is a record of a run evaluated only at its end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

from mpdit_bench.sweeps.runspec import RunSpec

HARDWARE = {"host": "node1", "machine": "x86_64", "cpus": 2}


def curve(values: Callable[[float], float], flops_per_step: float, steps: list[int], metric: str,
          batch: int = 8, seconds_per_step: float = 0.5) -> list[dict[str, Any]]:
    """Evaluation points of ``metric`` = values(training FLOPs) at ``steps``."""
    return [{"step": s, "images_seen": s * batch, "train_flops": s * flops_per_step, "wall_s": s * seconds_per_step,
             "metrics": {metric: values(s * flops_per_step)}, "intervals": {}} for s in steps]


def write_record(results: Path, spec: RunSpec, metrics: dict[str, Optional[float]],
                 points: Optional[list[dict[str, Any]]] = None, grid: bool = True,
                 sweep_dir: str = "results", hardware: Optional[dict[str, Any]] = None, gflops: float = 0.05) -> Path:
    """record.json (and a samples.png when ``grid``) under RESULTS/<experiment>/<scale>/<run_id>/; the
    record's run_dir is written relative to ``sweep_dir``, as a sweep run elsewhere would write it."""
    run_dir = Path(results) / spec.experiment / spec.scale / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    written_dir = Path(sweep_dir) / spec.experiment / spec.scale / spec.run_id
    if grid:
        (run_dir / "samples.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    record = {"record_version": 2, "run_id": spec.run_id, "experiment": spec.experiment, "scale": spec.scale,
              "label": spec.label, "model": spec.model, "axes": spec.axes, "spec": spec.to_dict(),
              "params": 1.0e6, "gflops": gflops, "gflops_paper_convention": gflops, "images_seen": 800,
              "seed": spec.seed, "smoke": spec.smoke, "metrics": metrics, "intervals": {},
              "bootstrap_replicates": {}, "timings": {"train": 60.0},
              "sample_grid": str(written_dir / "samples.png") if grid else None, "run_dir": str(written_dir),
              "hardware": hardware or HARDWARE}
    if points is not None:
        record["curve"] = points
    path = run_dir / "record.json"
    path.write_text(json.dumps(record))
    return path
