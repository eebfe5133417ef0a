"""Experiment `budget`: equal training compute per group, matched to a reference run's steps."""

import copy

import pytest
import torch
import yaml

from mpdit_bench.counting import training_flops_per_sample
from mpdit_bench.config import ConfigError
from mpdit_bench.models import build_model, model_config
from mpdit_bench.sweeps.budget import equal_compute_steps
from mpdit_bench.sweeps.cpu_scale import cpu_scaled
from mpdit_bench.sweeps.experiment import load_experiment

SCALES = {
    "cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 8, "steps": 50, "lr": 1e-3},
            "sample": {"num": 8, "steps": 2}, "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy"]}},
    "paper": {"data": {"name": "latents", "path": "x"}, "train": {"global_batch": 256, "steps": 400000},
              "sample": {"num": 50000}, "eval": {"ref": "ref.npz", "metrics": ["fid"]}},
}
VARIANTS = [
    {"group": "B", "model": "SiT-B/2", "label": "iso-B"},
    {"group": "B", "model": "MPDiT-B", "label": "mpdit-B"},
    {"group": "B", "model": "PPF-B-3", "label": "ppf3-B", "train": {"stage_proportions": [0.5, 0.25, 0.25]},
     "sample": {"cfg_scale": [1.0, 1.5, 1.5]}},
    {"group": "XL", "model": "SiT-XL/2", "label": "iso-XL", "cpu": {"train": {"steps": 10}}},
    {"group": "XL", "model": "MPDiT-XL", "label": "mpdit-XL"},
]
EXP = {"name": "budget", "base": {"model": "SiT-B/2"}, "scales": SCALES, "axes": [{"variants": VARIANTS}],
       "budget": {"reference": {"B": "iso-B", "XL": "iso-XL"}}}


def write(tmp_path, data):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def flops(name, scale, proportions=None):
    """Training FLOPs per sample, built here from the preset (not from the runner's resolved config)."""
    cfg = model_config(name, 256)
    cfg = cpu_scaled(cfg) if scale == "cpu" else cfg
    with torch.device("meta"):
        return training_flops_per_sample(build_model(cfg), proportions)


def by_label(path, scale):
    return {r.label: r for r in load_experiment(path).runs(scale)}


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_steps_are_equal_compute_within_each_group(tmp_path, scale):
    runs = by_label(write(tmp_path, EXP), scale)
    ref_b, ref_xl = (50, 10) if scale == "cpu" else (400000, 400000)
    assert runs["iso-B"].train["steps"] == ref_b and runs["iso-XL"].train["steps"] == ref_xl  # the budgets
    f_b, f_xl = flops("SiT-B/2", scale), flops("SiT-XL/2", scale)
    assert runs["mpdit-B"].train["steps"] == equal_compute_steps(ref_b, f_b, flops("MPDiT-B", scale))
    assert runs["ppf3-B"].train["steps"] == equal_compute_steps(
        ref_b, f_b, flops("PPF-B-3", scale, [0.5, 0.25, 0.25]))
    assert runs["mpdit-XL"].train["steps"] == equal_compute_steps(ref_xl, f_xl, flops("MPDiT-XL", scale))
    for label in ("mpdit-B", "ppf3-B"):  # cheaper per sample than the reference: trains longer
        assert runs[label].train["steps"] > ref_b
    # the training compute (steps x FLOPs/sample) is the reference's within one step's worth
    steps = runs["ppf3-B"].train["steps"]
    assert abs(steps * flops("PPF-B-3", scale, [0.5, 0.25, 0.25]) - ref_b * f_b) <= f_b


def test_ids_follow_the_steps_and_the_reference_keeps_its_run(tmp_path):
    with_budget = by_label(write(tmp_path, EXP), "cpu")
    plain = copy.deepcopy(EXP)
    del plain["budget"]
    for v in plain["axes"][0]["variants"]:
        v.pop("group")
    without = by_label(write(tmp_path, plain), "cpu")
    assert with_budget["iso-B"].run_id == without["iso-B"].run_id  # same steps, same run
    assert with_budget["mpdit-B"].run_id != without["mpdit-B"].run_id  # steps set by the budget
    more = copy.deepcopy(EXP)
    more["scales"]["cpu"]["train"]["steps"] = 80
    bigger = by_label(write(tmp_path, more), "cpu")
    assert bigger["mpdit-B"].train["steps"] > with_budget["mpdit-B"].train["steps"]
    assert bigger["mpdit-B"].run_id != with_budget["mpdit-B"].run_id
    assert bigger["iso-XL"].run_id == with_budget["iso-XL"].run_id  # XL's reference sets its own cpu steps


def test_one_label_reference_without_groups(tmp_path):
    exp = copy.deepcopy(EXP)
    exp["axes"] = [{"variants": [{k: v for k, v in x.items() if k != "group"} for x in VARIANTS[:2]]}]
    exp["budget"] = {"reference": "iso-B"}
    runs = by_label(write(tmp_path, exp), "cpu")
    assert runs["mpdit-B"].train["steps"] == equal_compute_steps(50, flops("SiT-B/2", "cpu"),
                                                                        flops("MPDiT-B", "cpu"))


def edited(edit):
    exp = copy.deepcopy(EXP)
    edit(exp)
    return exp


def _set_variant(i, **kv):
    return lambda e: e["axes"][0]["variants"][i].update(kv)


@pytest.mark.parametrize("edit, key, words", [
    (lambda e: e["budget"]["reference"].update(B="nope"), "budget.reference.B", ["iso-B", "mpdit-B", "ppf3-B"]),
    (_set_variant(1, group="L"), "group", ["B, XL"]),
    (lambda e: e["budget"]["reference"].pop("XL"), "group", ["B"]),
    (lambda e: e.pop("budget"), "group", ["budget"]),
    (lambda e: e.update(budget={"reference": "iso-B"}), "group", ["one label"]),
    (lambda e: e.update(budget={"steps": 10}), "budget", ["reference"]),
    (_set_variant(1, train={"steps": 5}), "mpdit-B: train.steps", ["reference 'iso-B'"]),
    (_set_variant(1, train={"global_batch": 4}), "mpdit-B: train.global_batch", ["8"]),
])
def test_budget_errors_name_file_key_and_allowed(tmp_path, edit, key, words):
    path = write(tmp_path, edited(edit))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.key == key
    assert str(path) in str(err.value)
    for word in words:
        assert word in err.value.allowed


def test_reference_without_steps_is_refused(tmp_path):
    exp = edited(lambda e: e["scales"]["cpu"]["train"].pop("steps"))
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, exp))
    assert err.value.key == "scales.cpu.train.steps" and "train.steps" in err.value.allowed


def test_per_stage_cfg_scale_reaches_the_sample_command_and_the_cost(tmp_path):
    from mpdit_bench.sweeps.costs import estimate_cost
    from mpdit_bench.sweeps.pipeline import sample_command

    runs = by_label(write(tmp_path, EXP), "cpu")
    cmd = sample_command(runs["ppf3-B"], tmp_path)
    assert cmd[cmd.index("--cfg-scale") + 1] == "1.0,1.5,1.5"  # the form `mpdit-bench sample` parses
    counts = {"gflops": 1.0}
    guided = estimate_cost(counts, runs["ppf3-B"].train, runs["ppf3-B"].sample, "cpu", 1)
    unguided = estimate_cost(counts, runs["ppf3-B"].train, {**runs["ppf3-B"].sample, "cfg_scale": [1.0] * 3},
                             "cpu", 1)
    assert guided["sample_pflop"] == 2 * unguided["sample_pflop"]  # conditional + unconditional pass


def test_sweep_wall_time_spreads_the_runs_over_the_workers():
    from mpdit_bench.sweeps.costs import FIRST_EVAL_EXTRA_SECONDS, estimate_cost, rates, sweep_wall_hours

    assert rates("cpu", 1)[0] < rates("cpu", 2)[0] < rates("cpu", 4)[0]
    one, two = (estimate_cost({"gflops": 1.0}, {"steps": 10, "global_batch": 4}, {"num": 8, "steps": 4}, "cpu", 1,
                              threads=t)["device_hours"] for t in (1, 2))
    assert one > two  # a worker of one thread is slower than one of two
    extra = FIRST_EVAL_EXTRA_SECONDS["cpu"] / 3600
    rows = [{"wall_hours": h} for h in (1.0, 1.0, 2.0)]
    assert sweep_wall_hours(rows, 1, "cpu") == 4.0 + extra
    assert sweep_wall_hours(rows, 2, "cpu") == 2.0 + extra
    assert sweep_wall_hours(rows, 8, "cpu") == 2.0 + extra  # never less than the longest run
