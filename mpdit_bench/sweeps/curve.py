"""Quality along training (``eval.every``): a run evaluated at chosen points of its training.

``eval.every`` lists steps (integers >= 1) or fractions of the run's training (floats in (0, 1]: of its
steps, hence of its training compute at its constant batch). Each point is evaluated from the checkpoint
kept at that step (checkpoints/step_N.pt, kept because the train phase passes the points as
``train.keep_steps``), the final step from last.pt. Points go to RUN/curve.json one at a time, so a killed
sweep keeps every finished point and a resumed or re-run sweep computes only what is missing; a point added
to ``eval.every`` of a finished run is computed on the next sweep. The curve's keys are not in the run id,
so changing them never re-runs a run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mpdit_bench.evaluation.metric_table import HELDOUT_LOSS
from mpdit_bench.files import write_text_atomic
from mpdit_bench.sweeps.runspec import RunSpec, primary_metric

CURVE_FILE = "curve.json"
PAPER_CURVE_SAMPLES = 10_000  # FID-10k, the usual sample count of FID along training


def wanted(spec: RunSpec) -> bool:
    return bool(spec.eval.get("every"))


def resolve_steps(every: list[int | float], steps: int) -> list[int]:
    """``eval.every`` as steps of a run of ``steps`` steps: a fraction f is f x steps rounded half up,
    within 1..steps; a step is taken as written (one past the run's end is reported as never reached)."""
    out = set()
    for value in every:
        if isinstance(value, float):
            out.add(min(steps, max(1, math.floor(value * steps + 0.5))))
        else:
            out.add(int(value))
    return sorted(out)


def keep_steps(spec: RunSpec) -> list[int]:
    """The steps the train phase keeps a checkpoint at for the curve (the final step is last.pt)."""
    steps = spec.train["steps"]
    return [s for s in resolve_steps(spec.eval.get("every") or [], steps) if s < steps]


def requested_steps(spec: RunSpec, final_step: int) -> list[int]:
    """Every point of the run's curve: eval.every's steps and the step training ended at."""
    return sorted(set(resolve_steps(spec.eval["every"], spec.train["steps"])) | {final_step})


def curve_metrics(spec: RunSpec) -> list[str]:
    """``eval.curve_metrics``; by default the held-out loss at CPU scale (cheap), the primary metric at
    paper scale (FID on ``curve_samples`` samples)."""
    if spec.eval.get("curve_metrics"):
        return list(spec.eval["curve_metrics"])
    return [HELDOUT_LOSS] if spec.scale == "cpu" else [primary_metric(spec)]


def curve_samples(spec: RunSpec) -> int:
    """Samples drawn at each point for its sample metrics."""
    if spec.eval.get("curve_samples"):
        return int(spec.eval["curve_samples"])
    return int(spec.sample["num"]) if spec.scale == "cpu" else PAPER_CURVE_SAMPLES


def sample_metric_names(names: list[str]) -> list[str]:
    return [n for n in names if n != HELDOUT_LOSS]


def checkpoint_at(run_dir: Path, step: int, final_step: int) -> Path | None:
    """The checkpoint of ``step``: last.pt at the final step, else the step_N.pt kept there (None: none)."""
    folder = run_dir / "checkpoints"
    if step == final_step and (folder / "last.pt").is_file():
        return folder / "last.pt"
    kept = folder / f"step_{step:07d}.pt"
    return kept if kept.is_file() else None


def kept_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.pt"))


def missing_reason(run_dir: Path, step: int, final_step: int) -> str:
    if step > final_step:
        return f"step {step} never reached: training ended at step {final_step}"
    kept = ", ".join(map(str, kept_steps(run_dir) + [final_step])) or "none"
    return f"no checkpoint kept at step {step} (kept: {kept})"


def cost_plan(spec: RunSpec):
    """What the dry run's estimate counts for the curve (`costs.CurvePlan`): the points before the last step."""
    from mpdit_bench.sweeps.costs import CurvePlan

    if not wanted(spec):
        return CurvePlan()
    names = curve_metrics(spec)
    return CurvePlan(points=len(keep_steps(spec)), heldout=HELDOUT_LOSS in names,
                     samples=curve_samples(spec) if sample_metric_names(names) else 0)


# ---- curve.json ---------------------------------------------------------------------------------------
def read_points(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / CURVE_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def save_point(run_dir: Path, point: dict[str, Any]) -> None:
    """Put one point into curve.json (replacing that step's), written atomically: the file always holds
    every point finished so far."""
    points = [p for p in read_points(run_dir) if p["step"] != point["step"]] + [point]
    write_text_atomic(run_dir / CURVE_FILE, json.dumps(sorted(points, key=lambda p: p["step"]), indent=1) + "\n")


def still_needed(point: dict[str, Any] | None, names: list[str], samples: int) -> list[str]:
    """The metrics of ``names`` a stored point lacks; sample metrics from another sample count count as lacking."""
    if point is None:
        return list(names)
    have = point.get("metrics") or {}
    same_samples = point.get("samples") == samples
    return [n for n in names if n not in have or (n != HELDOUT_LOSS and not same_samples)]


@dataclass
class Plan:
    """What a run's curve still needs: (step, checkpoint, metrics to compute) per point, and the points
    whose checkpoint was not kept."""

    requested: list[int]
    todo: list[tuple[int, Path, list[str]]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    done: list[int] = field(default_factory=list)


def plan(spec: RunSpec, run_dir: Path, final_step: int) -> Plan:
    names, samples = curve_metrics(spec), curve_samples(spec)
    stored = {p["step"]: p for p in read_points(run_dir)}
    out = Plan(requested_steps(spec, final_step))
    for step in out.requested:
        needed = still_needed(stored.get(step), names, samples)
        if not needed:
            out.done.append(step)
            continue
        ckpt = checkpoint_at(run_dir, step, final_step)
        if ckpt is None:
            out.missing.append({"step": step, "reason": missing_reason(run_dir, step, final_step)})
        else:
            out.todo.append((step, ckpt, needed))
    return out


# what evaluates one point: (step, checkpoint, metric names) -> {"metrics", "intervals", "wall_s", ...}
PointEvaluator = Callable[[int, Path, list[str]], dict[str, Any]]


def run_curve(spec: RunSpec, run_dir: Path, final_step: int, train_flops_per_sample: float,
              evaluate_point: PointEvaluator) -> dict[str, Any]:
    """Evaluate every point the curve still needs, saving each as soon as it is done."""
    todo = plan(spec, run_dir, final_step)
    stored = {p["step"]: p for p in read_points(run_dir)}
    batch, samples = int(spec.train["global_batch"]), curve_samples(spec)
    for step, ckpt, names in todo.todo:
        result = evaluate_point(step, ckpt, names)
        before = stored.get(step) or {}
        images = step * batch
        point = {"step": step, "images_seen": images, "train_flops": train_flops_per_sample * images,
                 "wall_s": result.get("wall_s", before.get("wall_s")),
                 "metrics": {**(before.get("metrics") or {}), **result["metrics"]},
                 "intervals": {**(before.get("intervals") or {}), **result["intervals"]},
                 "checkpoint": ckpt.name}
        if sample_metric_names(names) or "samples" in before:
            point["samples"] = samples if sample_metric_names(names) else before["samples"]
        save_point(run_dir, point)
    return {"computed": [step for step, _, _ in todo.todo], "missing": todo.missing,
            "metrics": curve_metrics(spec)}


def needs_update(spec: RunSpec, run_dir: Path, final_step: int, recorded: set[int]) -> bool:
    """Whether a finished run's curve lacks a point ``eval.every`` asks for (a point added after it
    finished, or a metric added to eval.curve_metrics) that its checkpoints can still give, or whose
    absence its record does not report yet (``recorded``: the steps its record accounts for)."""
    if not wanted(spec):
        return False
    todo = plan(spec, run_dir, final_step)
    return bool(todo.todo) or not set(todo.requested) <= recorded


def final_step_of(summary: dict[str, Any], spec: RunSpec) -> int:
    """The step training ended at (the train phase's summary), else the steps it was asked for."""
    step = summary.get("final_step", summary.get("step"))
    return int(step) if step is not None else int(spec.train["steps"])
