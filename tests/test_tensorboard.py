"""train.tensorboard: the rows of metrics.csv, read back from the event files with TensorBoard's reader."""

import csv

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from _tiny import tiny_run
from mpdit_bench.engine.train import train


def _scalars(run_dir):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_metrics_csv_rows_are_tensorboard_events_and_a_resumed_run_continues_them(tmp_path):
    run = tmp_path / "run"
    train(tiny_run(steps=4, tensorboard=True), run)
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    events = _scalars(run)
    assert set(events) == {"train/epoch", "train/loss", "train/lr", "train/images_per_s", "train/wall_s"}
    assert [step for step, _ in events["train/loss"]] == [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for (_, value), row in zip(events["train/loss"], rows):
        assert value == pytest.approx(float(row["loss"]), rel=1e-6)

    train(tiny_run(steps=6, tensorboard=True), run)  # resumes from step 4 and logs steps 5, 6 once
    steps = [step for step, _ in _scalars(run)["train/loss"]]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_no_event_files_unless_asked(tmp_path):
    train(tiny_run(steps=2), tmp_path / "run")
    assert (tmp_path / "run" / "metrics.csv").is_file() and not (tmp_path / "run" / "tensorboard").exists()
