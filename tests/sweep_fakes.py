"""Cheap stand-ins for the train / sample / evaluate phases, for the sweep tests only.

They do what the runner needs from a phase (files in the run directory, a dict back) in milliseconds,
and log every start and finish to a shared file so tests can check what ran, where, and how often.
Their numbers are fakes and are labelled so (``fake_*`` keys); nothing here claims to be a real metric.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mpdit_bench.config import ModelConfig
from mpdit_bench.counting import analytic_counts
from mpdit_bench.sweeps.pipeline import PhaseError


class FakePhases:
    names = ("count", "train", "sample", "evaluate")

    def __init__(self, log: str | Path, sleep: float = 0.0, fail_phase: str | None = None):
        self.log, self.sleep, self.fail_phase = Path(log), sleep, fail_phase

    def _event(self, spec, phase: str, event: str) -> None:
        line = json.dumps({"pid": os.getpid(), "run": spec.run_id, "phase": phase, "event": event}) + "\n"
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # one write per line: atomic
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def _step(self, spec, phase: str) -> None:
        self._event(spec, phase, "start")
        time.sleep(self.sleep)
        if phase == self.fail_phase:
            raise PhaseError(f"fake failure in {phase}")

    def count(self, spec, run_dir):
        self._step(spec, "count")
        counts = analytic_counts(ModelConfig.from_dict(spec.model_config))  # real, analytic, cheap
        self._event(spec, "count", "done")
        return counts

    def train(self, spec, run_dir, on_validation=None):
        self._step(spec, "train")
        steps, batch = spec.train["steps"], spec.train["global_batch"]
        rows = ["step,epoch,loss,lr,images_per_s,wall_s,val_loss"]
        for step in range(1, steps + 1, max(1, steps // 4)):
            val = 1.0 / step  # a fake, falling curve
            rows.append(f"{step},0,{val},{spec.train.get('lr', 1e-4)},1.0,{step},{val}")
            if on_validation:
                on_validation(step, val)
        (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
        self._event(spec, "train", "done")
        return {"step": steps, "images_seen": steps * batch, "fake": True}

    def sample(self, spec, run_dir):
        self._step(spec, "sample")
        self._event(spec, "sample", "done")
        return {"samples": None, "grid": None, "num": spec.sample["num"]}

    def evaluate(self, spec, run_dir):
        self._step(spec, "evaluate")
        self._event(spec, "evaluate", "done")
        return {name: None for name in spec.eval["metrics"]} | {"fake_quality": len(spec.run_id)}


class FakeCurvePhases(FakePhases):
    """The fakes with a curve phase: training leaves empty checkpoint files where the engine would keep
    them (train.keep_steps and the curve's points, but not ``drop``), and each point's "evaluation" is a
    logged call returning a falling fake held-out loss. ``fail_at`` makes the evaluation of that step fail."""

    names = ("count", "train", "sample", "evaluate", "curve")

    def __init__(self, log, drop: tuple[int, ...] = (), fail_at: int | None = None, **kwargs):
        super().__init__(log, **kwargs)
        self.drop, self.fail_at = set(drop), fail_at

    def train(self, spec, run_dir, on_validation=None):
        from mpdit_bench.sweeps.curve import keep_steps

        result = super().train(spec, run_dir, on_validation)
        folder = run_dir / "checkpoints"
        folder.mkdir(exist_ok=True)
        (folder / "last.pt").write_bytes(b"")
        for step in set(spec.train.get("keep_steps") or []) | set(keep_steps(spec)):
            if step not in self.drop:
                (folder / f"step_{step:07d}.pt").write_bytes(b"")
        (run_dir / "summary.json").write_text(json.dumps({"final_step": spec.train["steps"], "train_seconds": 9.0}))
        return {**result, "final_step": spec.train["steps"]}

    def curve(self, spec, run_dir):
        from mpdit_bench.sweeps.curve import final_step_of, run_curve, wanted

        if not wanted(spec):
            return {"computed": [], "missing": []}

        def evaluate_point(step, checkpoint, names):
            self._event(spec, f"curve@{step}", "start")
            if step == self.fail_at:
                raise PhaseError(f"fake failure at step {step}")
            return {"metrics": {name: 1.0 / step for name in names},
                    "intervals": {name: [0.9 / step, 1.1 / step] for name in names}, "wall_s": float(step)}

        final = final_step_of(json.loads((run_dir / "summary.json").read_text()), spec)
        return run_curve(spec, run_dir, final, 1.0e6, evaluate_point)


def read_events(log: str | Path) -> list[dict]:
    path = Path(log)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


if __name__ == "__main__":  # a sweep worker process: EXPERIMENT SCALE RESULTS LOG SLEEP
    from mpdit_bench.sweeps.experiment import load_experiment
    from mpdit_bench.sweeps.runner import run_sweep

    exp_path, scale, results, log, sleep = sys.argv[1:6]
    runs = load_experiment(exp_path).runs(scale)
    run_sweep(runs, results, FakePhases(log, float(sleep)), poll_s=0.2)
