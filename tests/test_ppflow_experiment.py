"""experiments/ppflow.yaml: every run resolves to a valid model, and equal compute gives sensible steps.

The expansion here is a minimal reading of the documented layout (base <- scale base <- axis entries), kept
in the test: the sweep runner owns the real one."""

import copy
import itertools
from pathlib import Path

import pytest
import torch

import mpdit_bench.models  # noqa: F401
from mpdit_bench import ppflow
from mpdit_bench.config import load_yaml
from mpdit_bench.models import build_model, model_config
from mpdit_bench.run_config import validate_run_config

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "ppflow.yaml"


def merge(a, b):
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def fill(value, size):
    if isinstance(value, str):
        return value.replace("{size}", size)
    if isinstance(value, dict):
        return {k: fill(v, size) for k, v in value.items()}
    return value


def expand(exp, scale):
    sc = exp["scales"][scale]
    axes = {**exp["axes"], **sc.get("axes", {})}
    base = merge(exp["base"], sc.get("base", {}))
    runs = []
    for size, arch in itertools.product(axes["size"], axes["arch"]):
        entry = {k: v for k, v in arch.items() if k != "name"}
        run = merge(merge(base, entry), sc.get("arch_overrides", {}).get(arch["name"], {}))
        runs.append({"arch": arch["name"], "size": size, **fill(run, size)})
    return runs


@pytest.mark.parametrize("scale", ["paper", "cpu"])
def test_every_run_builds_and_equal_compute_orders_the_steps(scale):
    exp = load_yaml(EXPERIMENT)
    budget = merge(exp["budget"], exp["scales"][scale].get("budget", {}))
    runs = expand(exp, scale)
    assert {r["arch"] for r in runs} == {"isotropic", "mpdit", "ppflow-2", "ppflow-3", "combined"}
    flops = {}
    for run in runs:
        cfg = model_config(run["model"], **run["model_overrides"])
        with torch.device("meta"):
            model = build_model(cfg)
        proportions = run["train"].get("stage_proportions")
        if cfg.time_patch_sizes:
            assert len(proportions) == len(cfg.time_patch_sizes) == len(run["sample"]["cfg_scale"])
        engine = {k: v for k, v in run.items() if k not in ("arch", "size")}
        engine["sample"] = {k: v for k, v in run["sample"].items() if k != "num"}  # the sweep's --num
        validate_run_config(engine, source=f"{EXPERIMENT} {scale} {run['arch']}")  # keys the engine reads
        flops[run["size"], run["arch"]] = ppflow.training_flops_per_sample(model, proportions)
    for (size, arch), f in flops.items():
        steps = ppflow.equal_compute_steps(budget["steps"], flops[size, budget["reference"]], f)
        if arch != "isotropic":
            assert steps > budget["steps"]  # every pyramid is cheaper per sample, so it trains longer
    for size in {s for s, _ in flops}:
        assert flops[size, "ppflow-3"] < flops[size, "ppflow-2"] < flops[size, "isotropic"]
