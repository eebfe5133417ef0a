"""Replicates over training seeds: the seed changes the run id only; the dry run counts every replicate."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mpdit_bench.cli import app
from mpdit_bench.config import ConfigError
from mpdit_bench.sweeps.experiment import load_experiment

EXPERIMENTS = Path(__file__).parent.parent / "experiments"
EXPERIMENT = {
    "name": "reps", "base": {"model": "MPDiT-B"}, "seeds": 3, "reference": "iso",
    "scales": {"cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 8, "steps": 8, "seed": 5},
                       "sample": {"num": 8, "seed": 0},
                       "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy"]}}},
    "axes": [{"grid": {"model_overrides.refine_depth": [4, 6]}},
             {"variants": [{"model": "DiT-B/2+shared+tokens+fno", "label": "iso", "cpu": {"seeds": 1}}]}],
}


def write(tmp_path, exp) -> Path:
    path = tmp_path / "reps.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def test_seeds_change_the_run_id_only(tmp_path):
    exp = load_experiment(write(tmp_path, EXPERIMENT))
    runs = exp.runs("cpu")
    k4 = [r for r in runs if r.label == "MPDiT-B k=4"]
    assert [r.seed for r in k4] == [5, 6, 7] and [r.train["seed"] for r in k4] == [5, 6, 7]
    assert len({r.run_id for r in k4}) == 3
    first = k4[0].to_dict()
    for rep in k4[1:]:
        d = rep.to_dict()
        changed = {k for k in d if d[k] != first[k]}
        assert changed == {"run_id", "seed", "train"}, changed
        assert {k for k in d["train"] if d["train"][k] != first["train"][k]} == {"seed"}
        assert rep.sample["seed"] == 0  # the sampling seed is not the training seed
    unreplicated = load_experiment(write(tmp_path, {**EXPERIMENT, "seeds": 1})).runs("cpu")
    assert unreplicated[0].run_id == k4[0].run_id  # adding seeds keeps the runs already made
    iso = [r for r in runs if r.label == "iso"]
    assert len(iso) == 1 and iso[0].smoke and not k4[0].smoke
    assert exp.reference_label(k4[0]) == "iso"
    assert len(exp.runs("cpu", seeds=2)) == 2 * 3  # --seeds N overrides every run's seeds


@pytest.mark.parametrize("key,value,match", [("seeds", 0, "seeds"), ("seeds", [1, 1], "distinct"),
                                             ("reference", "nope", "reference")])
def test_bad_seeds_and_references_are_refused(tmp_path, key, value, match):
    with pytest.raises(ConfigError, match=match):
        load_experiment(write(tmp_path, {**EXPERIMENT, key: value}))


def test_bad_eval_bootstrap_is_refused(tmp_path):
    exp = json.loads(json.dumps(EXPERIMENT))
    exp["scales"]["cpu"]["eval"]["bootstrap"] = 1
    with pytest.raises(ConfigError, match="eval.bootstrap"):
        load_experiment(write(tmp_path, exp))


def test_dry_run_json_lists_every_replicate(tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(EXPERIMENTS / "ablation_k.yaml"), "--scale", "cpu", "--dry-run",
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    b = [r for r in rows if r["label"].startswith(("MPDiT-B", "DiT-B"))]
    assert len(b) == 12 and {r["seed"] for r in b} == {0, 1, 2} and not any(r["smoke"] for r in b)
    assert all(r["smoke"] for r in rows if "XL" in r["label"])
    for key in ("run_id", "label", "seed", "params", "gflops", "device_hours", "axes"):
        assert all(key in r for r in rows)
    again = CliRunner().invoke(app, ["sweep", str(EXPERIMENTS / "ablation_k.yaml"), "--scale", "cpu", "--dry-run",
                                     "--json", "--seeds", "4"])
    assert len(json.loads(again.stdout)) == 4 * 8


def test_report_shows_means_over_seeds_and_verdicts(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from sweep_fakes import FakePhases

    from mpdit_bench.reports.report import write_reports
    from mpdit_bench.sweeps.runner import run_sweep

    class SeededMetrics(FakePhases):
        """k=4 is worse than the reference by 1.0 +- 0.1 on every seed; k=6 equals it up to seed noise."""

        def evaluate(self, spec, run_dir):
            base = 10.0 + spec.seed * 0.5
            k = spec.axes.get("model_overrides.refine_depth")
            shift = {4: 1.0 + 0.1 * (spec.seed - 6), 6: 0.3 * (-1) ** spec.seed}.get(k, 0.0)
            return {"fd_fmnist_proxy": base + shift}

    exp = {**EXPERIMENT, "axes": [{"grid": {"model_overrides.refine_depth": [4, 6]}},
                                  {"variants": [{"model": "DiT-B/2+shared+tokens+fno", "label": "iso"}]}]}
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    runs = load_experiment(write(exp_dir, exp)).runs("cpu")
    run_sweep(runs, tmp_path / "results", SeededMetrics(tmp_path / "log"))
    write_reports(tmp_path / "results", tmp_path / "out", experiments_dir=exp_dir)
    md = (tmp_path / "out" / "reps_cpu.md").read_text()
    section = md.split("### fd_fmnist_proxy (primary: decides)")[1].split("###")[0]
    assert section.count("Reference **iso**") == 1  # the reference named once, never compared with itself
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| configuration")]
    verdict = {r[0]: r[-1] for r in rows}
    assert verdict == {"MPDiT-B k=4": "worse", "MPDiT-B k=6": "no detectable difference"}
    assert all(r[1] == "3" for r in rows) and f"test = {V_PAIRED} (n=3)" in section  # stated once, not per row
    assert (tmp_path / "out" / "reps_cpu_pareto.png").read_bytes()[:4] == b"\x89PNG"


V_PAIRED = "paired t over seeds"
