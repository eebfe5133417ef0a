"""Quality along training: eval.every's points resolved, checked, kept out of the run id, evaluated once each
from kept checkpoints, saved one by one, added to finished runs, and reported missing when not kept."""

import copy
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _data import needs_fashion_mnist  # noqa: E402
from sweep_fakes import FakeCurvePhases, read_events  # noqa: E402

from mpdit_bench.config import ConfigError  # noqa: E402
from mpdit_bench.sweeps import curve  # noqa: E402
from mpdit_bench.sweeps.experiment import load_experiment  # noqa: E402
from mpdit_bench.sweeps.records import load_curves, load_records  # noqa: E402
from mpdit_bench.sweeps.runner import dry_run_rows, execute_run, run_dir_of, run_sweep  # noqa: E402

ROOT = Path(__file__).parent.parent
EXPERIMENT = {
    "name": "tinycurve",
    "base": {"model": "MPDiT-B"},
    "scales": {"cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 4, "steps": 8},
                       "sample": {"num": 8},
                       "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy", "fid"],
                                "every": [0.5, 1.0]}}},
    "axes": [{"grid": {"model_overrides.refine_depth": [2, 4]}}],
}


def write(tmp_path, data, name="tinycurve.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def with_eval(data, **keys):
    data = copy.deepcopy(data)
    data["scales"]["cpu"]["eval"].update(keys)
    return data


def runs_of(tmp_path, data, name="tinycurve.yaml"):
    return load_experiment(write(tmp_path, data, name)).runs("cpu")


def point_calls(log):
    return Counter((e["run"], int(e["phase"].split("@")[1])) for e in read_events(log)
                   if e["phase"].startswith("curve@") and e["event"] == "start")


# ---- resolving and checking ---------------------------------------------------------------------------
def test_fractions_resolve_to_unique_steps_within_the_run():
    assert curve.resolve_steps([0.25, 0.5, 0.75, 1.0], 160) == [40, 80, 120, 160]
    assert curve.resolve_steps([0.25, 0.75], 10) == [3, 8]  # 2.5 and 7.5 round half up
    assert curve.resolve_steps([0.001, 0.5, 5, 1.0], 10) == [1, 5, 10]  # at least step 1; duplicates merged
    assert curve.resolve_steps([3, 12], 10) == [3, 12]  # a step past the end stays, to be reported


def test_points_keep_checkpoints_and_include_the_final_step(tmp_path):
    spec = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 3, 0.5]))[0]
    assert curve.keep_steps(spec) == [2, 3, 4]  # the final step is last.pt
    assert curve.requested_steps(spec, 8) == [2, 3, 4, 8]
    assert curve.requested_steps(spec, 6) == [2, 3, 4, 6]  # stopped early (time limit): its last step
    assert curve.curve_metrics(spec) == ["heldout_loss"] and curve.curve_samples(spec) == 8
    whole = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 1.0]), "whole.yaml")[0]
    assert curve.requested_steps(whole, 6) == [2, 6, 8]
    assert curve.missing_reason(tmp_path, 8, 6) == "step 8 never reached: training ended at step 6"


@pytest.mark.parametrize("keys, bad", [
    ({"every": [0]}, "eval.every"), ({"every": [1.5]}, "eval.every"), ({"every": []}, "eval.every"),
    ({"every": "0.5"}, "eval.every"), ({"every": [True]}, "eval.every"),
    ({"curve_metrics": ["nonsense"]}, "eval.curve_metrics"),
    ({"curve_metrics": ["kid_fmnist_proxy"]}, "eval.curve_metrics"),  # not among eval.metrics
    ({"curve_samples": 0}, "eval.curve_samples"),
])
def test_bad_curve_keys_are_refused_at_load(tmp_path, keys, bad):
    with pytest.raises(ConfigError) as err:
        runs_of(tmp_path, with_eval(EXPERIMENT, **keys))
    message = str(err.value)
    assert "tinycurve.yaml" in message and bad in message and "allowed" in message


def test_curve_keys_leave_run_ids_unchanged(tmp_path):
    plain = copy.deepcopy(EXPERIMENT)
    del plain["scales"]["cpu"]["eval"]["every"]
    ids = [s.run_id for s in runs_of(tmp_path, plain, "a.yaml")]
    curved = with_eval(EXPERIMENT, every=[2, 0.25], curve_metrics=["heldout_loss", "fid"], curve_samples=4)
    assert [s.run_id for s in runs_of(tmp_path, curved, "b.yaml")] == ids
    assert [s.run_id for s in runs_of(tmp_path, EXPERIMENT, "c.yaml")] == ids


def test_the_main_job_has_the_same_run_ids_with_and_without_its_curve(tmp_path):
    raw = yaml.safe_load((ROOT / "experiments" / "ablation_k.yaml").read_text())
    with_curve = {(s.scale, s.label, s.seed): s.run_id for scale in ("cpu", "paper")
                  for s in load_experiment(ROOT / "experiments" / "ablation_k.yaml").runs(scale)}
    del raw["scales"]["paper"]["eval"]["every"]
    for variant in raw["axes"][0]["variants"]:
        variant.pop("cpu")
    bare = load_experiment(write(tmp_path, raw, "ablation_k.yaml"))
    without = {(s.scale, s.label, s.seed): s.run_id for scale in ("cpu", "paper") for s in bare.runs(scale)}
    assert without == with_curve
    assert with_curve[("cpu", "MPDiT-B k=4", 0)] == "05128791a037"  # as pinned in test_sweep_ids
    assert any(curve.wanted(s) for s in load_experiment(ROOT / "experiments" / "ablation_k.yaml").runs("cpu"))


def test_dry_run_counts_the_curve_points(tmp_path):
    plain = copy.deepcopy(EXPERIMENT)
    del plain["scales"]["cpu"]["eval"]["every"]
    before = dry_run_rows(runs_of(tmp_path, plain, "a.yaml"))[0]
    after = dry_run_rows(runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 0.5, 1.0]), "b.yaml"))[0]
    assert before["curve_points"] == 0 and after["curve_points"] == 2
    extra_s = (after["device_hours"] - before["device_hours"]) * 3600
    assert extra_s == pytest.approx(2 * 8.0, rel=1e-6)  # two held-out losses of the points before the end


# ---- running the curve --------------------------------------------------------------------------------
def test_a_resumed_run_recomputes_no_finished_point(tmp_path):
    runs = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 0.5, 0.75, 1.0]))
    results, log = tmp_path / "results", tmp_path / "events.log"
    broken = run_sweep(runs, results, FakeCurvePhases(log, fail_at=6))  # dies between the 2nd and 3rd points
    assert len(broken.failed) == len(runs)
    for spec in runs:  # every point finished before the crash is on disk
        assert [p["step"] for p in curve.read_points(run_dir_of(results, spec))] == [2, 4]
    done = run_sweep(runs, results, FakeCurvePhases(log))
    assert sorted(done.finished) == sorted(s.run_id for s in runs)
    calls = point_calls(log)
    for spec in runs:
        assert calls[(spec.run_id, 2)] == 1 and calls[(spec.run_id, 4)] == 1  # not recomputed
        assert calls[(spec.run_id, 6)] == 2 and calls[(spec.run_id, 8)] == 1  # the failed one retried once
    again = run_sweep(runs, results, FakeCurvePhases(log))  # a re-run sweep: nothing to do
    assert again.finished == [] and point_calls(log) == calls


def test_a_point_added_to_a_finished_run_is_the_only_one_computed(tmp_path):
    data = copy.deepcopy(EXPERIMENT)
    data["scales"]["cpu"]["train"]["keep_steps"] = [2, 6]  # kept anyway, so a later point can use them
    runs = runs_of(tmp_path, data)
    results, log = tmp_path / "results", tmp_path / "events.log"
    run_sweep(runs, results, FakeCurvePhases(log))
    first = point_calls(log)
    assert set(first.values()) == {1} and {step for _, step in first} == {4, 8}
    later = runs_of(tmp_path, with_eval(data, every=[2, 0.5, 1.0]), "later.yaml")
    assert [s.run_id for s in later] == [s.run_id for s in runs]
    logged = len(read_events(log))
    result = run_sweep(later, results, FakeCurvePhases(log))
    assert sorted(result.finished) == sorted(s.run_id for s in runs)
    assert point_calls(log) - first == Counter({(s.run_id, 2): 1 for s in runs})
    assert {e["phase"] for e in read_events(log)[logged:]} == {"curve@2"}  # no other phase ran again
    record = json.loads((run_dir_of(results, runs[0]) / "record.json").read_text())
    assert [p["step"] for p in record["curve"]] == [2, 4, 8] and record["curve_missing"] == []


def test_a_point_without_a_kept_checkpoint_is_reported_missing(tmp_path):
    runs = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 0.5, 1.0]))[:1]
    results, log = tmp_path / "results", tmp_path / "events.log"
    run_sweep(runs, results, FakeCurvePhases(log, drop=(2,)))  # the engine kept no step_2.pt
    record = json.loads((run_dir_of(results, runs[0]) / "record.json").read_text())
    assert [p["step"] for p in record["curve"]] == [4, 8]
    assert record["curve_missing"] == [{"step": 2, "reason": "no checkpoint kept at step 2 (kept: 4, 8)"}]
    assert run_sweep(runs, results, FakeCurvePhases(log)).finished == []  # reported: not retried forever
    later = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 0.5, 1.0, 3]), "later.yaml")[:1]
    assert run_sweep(later, results, FakeCurvePhases(log)).finished == [runs[0].run_id]  # to report step 3
    record = json.loads((run_dir_of(results, runs[0]) / "record.json").read_text())
    assert [m["step"] for m in record["curve_missing"]] == [2, 3] and point_calls(log)[(runs[0].run_id, 3)] == 0


def test_the_record_keeps_the_curve_and_pandas_loads_it(tmp_path):
    runs = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.5, 1.0]))
    results, log = tmp_path / "results", tmp_path / "events.log"
    run_sweep(runs, results, FakeCurvePhases(log))
    record = load_records(results).iloc[0]["record"]
    point = record["curve"][0]
    assert set(point) >= {"step", "images_seen", "train_flops", "wall_s", "metrics", "intervals"}
    assert point["images_seen"] == 4 * 4 and point["train_flops"] == pytest.approx(1.0e6 * 16)
    assert point["metrics"]["heldout_loss"] == pytest.approx(0.25) and point["intervals"]["heldout_loss"][0] < 0.25
    assert record["training_log"][0]["val_loss"] == 1.0  # metrics.csv rows stay in the record
    frame = load_curves(results)
    assert len(frame) == 2 * len(runs) and set(frame["step"]) == {4, 8}
    assert frame[frame["step"] == 8]["final"].all() and not frame[frame["step"] == 4]["final"].any()
    assert frame["metric.heldout_loss"].gt(0).all() and (frame["ci95_low.heldout_loss"] < frame["ci95_high.heldout_loss"]).all()


def test_records_before_the_curve_still_read(tmp_path):
    from mpdit_bench.sweeps.records import curve_points, training_log

    old = {"record_version": 2, "curve": [{"step": 2.0, "loss": 1.0, "val_loss": 0.5}]}
    assert training_log(old) == old["curve"] and curve_points(old) == []
    run = tmp_path / "res" / "e" / "cpu" / "abc"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({**old, "run_id": "abc", "experiment": "e"}))
    assert load_curves(tmp_path / "res").empty and len(load_records(tmp_path / "res")) == 1


# ---- the pipeline's curve phase (evaluations monkeypatched) -------------------------------------------
def fake_checkpoints(run_dir, steps, final):
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True)
    for step in steps:
        (folder / f"step_{step:07d}.pt").write_bytes(b"")
    (folder / "last.pt").write_bytes(b"")
    (run_dir / "summary.json").write_text(json.dumps({"final_step": final, "train_seconds": 80.0}))


def test_the_phase_reuses_the_final_results_and_samples_the_other_points(tmp_path, monkeypatch):
    from mpdit_bench.sweeps.pipeline import Pipeline
    from mpdit_bench.sweeps.state import write_json_atomic

    spec = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.5, 1.0], curve_metrics=["heldout_loss", "fid"]))[0]
    run = tmp_path / "run"
    fake_checkpoints(run, [4], 8)
    write_json_atomic(run / "state.json", {"phases": {
        "heldout": {"result": {"heldout_loss": 0.3, "heldout_loss_ci95": [0.2, 0.4]}},
        "evaluate": {"result": {"fid": 50.0, "fid_ci95": [45.0, 55.0], "fd_fmnist_proxy": 1.0}}}})
    calls = []
    monkeypatch.setattr(Pipeline, "heldout_of", lambda self, spec, ckpt: calls.append(("heldout", ckpt.name))
                        or {"heldout_loss": 0.6, "heldout_loss_ci95": [0.5, 0.7]})
    monkeypatch.setattr(Pipeline, "sample", lambda self, spec, run_dir, ckpt=None, out=None, num=None:
                        calls.append(("sample", ckpt.name, out.relative_to(run_dir).as_posix(), num)) or {})
    monkeypatch.setattr(Pipeline, "evaluate", lambda self, spec, run_dir, samples=None, metrics=None:
                        calls.append(("evaluate", metrics)) or {"fid": 90.0, "fd_fmnist_proxy": 3.0})
    monkeypatch.setattr("mpdit_bench.checkpoint.load", lambda path: {"train_seconds": 40.0})
    result = Pipeline().curve(spec, run)
    assert result["computed"] == [4, 8] and result["missing"] == []
    assert calls == [("heldout", "step_0000004.pt"), ("sample", "step_0000004.pt", "curve/step_4/samples.npz", 8),
                     ("evaluate", ["fid"])]  # step 8: the run's own held-out loss and FID on as many samples
    mid, end = curve.read_points(run)
    assert mid["metrics"] == {"heldout_loss": 0.6, "fid": 90.0} and mid["wall_s"] == 40.0
    assert end["metrics"] == {"heldout_loss": 0.3, "fid": 50.0} and end["intervals"]["fid"] == [45.0, 55.0]
    assert end["wall_s"] == 80.0 and mid["samples"] == end["samples"] == 8
    assert Pipeline().curve(spec, run)["computed"] == [] and len(calls) == 3  # nothing left to compute
    more = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.5, 1.0], curve_metrics=["heldout_loss", "fid"],
                                       curve_samples=4), "more.yaml")[0]
    assert Pipeline().curve(more, run)["computed"] == [4, 8]  # another sample count: FID again, not the loss
    assert [c[0] for c in calls[3:]] == ["sample", "evaluate", "sample", "evaluate"]


# ---- one real run --------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_fashion_mnist
def test_a_real_tiny_run_gets_its_heldout_curve(tmp_path, monkeypatch):
    from mpdit_bench.evaluation.heldout import heldout_loss
    from mpdit_bench.sweeps.pipeline import Pipeline

    # the real held-out loss of the real checkpoints, on a smaller grid to keep the test short
    monkeypatch.setattr(Pipeline, "heldout_of", lambda self, spec, ckpt: heldout_loss(ckpt, 50, images=16, times=2))

    data = with_eval(EXPERIMENT, every=[0.5, 1.0])
    data["scales"]["cpu"]["train"].update({"steps": 4, "ema_warmup": True, "progress": False})
    spec = runs_of(tmp_path, data)[0]

    class TrainAndCurve(Pipeline):
        names = ("train", "curve")

    record = execute_run(spec, tmp_path / "run", TrainAndCurve())
    assert (tmp_path / "run" / "checkpoints" / "step_0000002.pt").is_file()
    steps = [p["step"] for p in record["curve"]]
    losses = [p["metrics"]["heldout_loss"] for p in record["curve"]]
    assert steps == [2, 4] and all(0.0 < loss < 10.0 for loss in losses)
    assert record["curve"][0]["wall_s"] < record["curve"][1]["wall_s"]
    assert record["curve"][1]["train_flops"] == pytest.approx(2 * record["curve"][0]["train_flops"], rel=1e-9)


def test_the_train_phase_keeps_a_checkpoint_at_each_point_also_on_resume(tmp_path):
    from mpdit_bench.sweeps.pipeline import write_run_config

    run = tmp_path / "run"
    run.mkdir()
    spec = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 1.0]))[0]
    config = write_run_config(spec, run)
    assert yaml.safe_load(config.read_text())["train"]["keep_steps"] == [2]
    assert spec.run_config()["train"].get("keep_steps") is None  # the run's own settings (and id) unchanged
    later = runs_of(tmp_path, with_eval(EXPERIMENT, every=[0.25, 0.5, 1.0]), "later.yaml")[0]
    written = yaml.safe_load(write_run_config(later, run).read_text())  # a resume with a point added
    assert written["train"]["keep_steps"] == [2, 4] and written["model"] == spec.model
