"""Reports from stored records: tables beside the paper, missing metrics shown as missing, plots written."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from report_records import write_record  # noqa: E402
from sweep_fakes import FakePhases  # noqa: E402

from mpdit_bench.reports.plots import indistinguishable, pareto_front, pareto_plot  # noqa: E402
from mpdit_bench.reports.report import write_reports  # noqa: E402
from mpdit_bench.reports.tables import MISSING, NOT_IN_FACTS  # noqa: E402
from mpdit_bench.reports.verdicts import Summary  # noqa: E402
from mpdit_bench.sweeps.experiment import load_experiment  # noqa: E402
from mpdit_bench.sweeps.records import load_records  # noqa: E402
from mpdit_bench.sweeps.runner import run_sweep  # noqa: E402

EXPERIMENT = {
    "name": "rep", "description": "report test", "paper_table": "mpdit/4",
    "base": {"model": "MPDiT-B"},
    "scales": {"cpu": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 8, "steps": 8},
                       "sample": {"num": 8},
                       "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy", "fid"]}}},
    "axes": [{"grid": {"model_overrides.refine_depth": [4, 6, 8]}},
             {"variants": [{"model": "DiT-B/2+shared+tokens+fno"}]}],
}


class FakeMetrics(FakePhases):
    """Fake evaluation: a made-up proxy value for every run but k=8, whose evaluator 'reported null'."""

    def evaluate(self, spec, run_dir):
        value = None if spec.model_config["depths"] == [2, 4] else 0.5 + spec.model_config["depths"][-1] / 10
        return {"fd_fmnist_proxy": value, "fid": None, "num_samples": 8}


def test_report_from_records(tmp_path):
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    (exp_dir / "rep.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    runs = load_experiment(exp_dir / "rep.yaml").runs("cpu")
    results, out = tmp_path / "results", tmp_path / "reports"
    run_sweep(runs[:3], results, FakeMetrics(tmp_path / "log"))  # the isotropic baseline is left unrun

    frame = load_records(results)
    assert len(frame) == 3 and frame["metric.fd_fmnist_proxy"].isna().sum() == 1
    assert frame["metric.fid"].isna().all()

    written = write_reports(results, out, experiments_dir=exp_dir)
    md = (out / "rep_cpu.md").read_text()
    assert {p.name for p in written} >= {"rep_cpu.md", "rep_cpu_pareto.png", "rep_cpu_compute.png", "index.md"}
    for png in ("rep_cpu_pareto.png", "rep_cpu_compute.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paper_part, runs_part = md.split("## Runs")
    assert "## MPDiT Table 4: refine depth k" in paper_part  # the report leads with its paper table
    assert "| MPDiT-B k = 4 | 104.8 | 104.80 (+0.00) | 13.9¹ |" in paper_part
    cost, col = _table(runs_part, "### Architecture and cost")
    k6, k8 = cost["MPDiT-B k=6"], cost["MPDiT-B k=8"]
    assert k6[col["params M (paper)"]] == "104.8" and k6[col["GFLOPs (paper)"]] == "16.60"  # from presets
    assert k6[col["GFLOPs true (ours)"]] == "16.18" and k6[col["GFLOPs paper conv. (ours)"]] == "16.63"  # as `flops` prints
    assert k8[col["params M (paper)"]] == NOT_IN_FACTS  # k=8 is not a published preset
    iso = cost["DiT-B/2+shared+tokens+fno"]
    assert iso[col["status"]] == "not run" and iso[col["images seen"]] == MISSING
    assert k8[col["status"]] == "finished" and "fd_fmnist_proxy (ours)" not in col  # cost apart from metrics
    got, mcol = _table(runs_part, "### Metrics")
    # a column that reads the same on every row is stated once under its table, not repeated
    assert "fd_fmnist_proxy (paper)" not in mcol and "fid (ours)" not in mcol
    assert f"fd_fmnist_proxy (paper) = {NOT_IN_FACTS}" in runs_part and f"fid (ours) = {MISSING}" in runs_part
    assert got["MPDiT-B k=6"][mcol["fd_fmnist_proxy (ours)"]] == "0.800"  # cpu depths (3, 3): 0.5 + 3 / 10
    assert got["MPDiT-B k=8"][mcol["fd_fmnist_proxy (ours)"]] == MISSING  # null, not 0
    assert "1 configuration(s) have no fd_fmnist_proxy value" in md


def _table(md: str, heading: str) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The first table under ``heading``: rows by their first cell, and column name -> index of the rest."""
    lines = md.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    table = lines[start: next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table[2:]}
    header = [c.strip() for c in table[0].split("|")[2:-1]]
    return rows, {name: i for i, name in enumerate(header)}


POINTS = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.5, 3.0), (2.0, 6.0)]  # (GFLOPs, metric)


def test_pareto_front_of_a_lower_is_better_metric():
    assert pareto_front(POINTS, "fid") == [(1.0, 5.0), (2.0, 3.0), (4.0, 1.0)]


def test_pareto_front_of_a_higher_is_better_metric():
    assert pareto_front(POINTS, "is") == [(1.0, 5.0), (2.0, 6.0)]  # at 2 GFLOPs the higher of 3 and 6
    assert pareto_front(POINTS, "precision") == pareto_front(POINTS, "class_accuracy_fmnist_proxy")


def _points(values: dict[str, tuple[float, float, float, float]], metric: str) -> list[dict]:
    """label -> (GFLOPs, mean, low, high) as `pareto_plot` takes them."""
    return [{"label": label, "smoke": False, "gflops": g, "summary": Summary(label, metric, 2, mean, low, high, "t")}
            for label, (g, mean, low, high) in values.items()]


def test_the_plot_draws_the_front_the_metric_direction_asks_for(tmp_path, monkeypatch):
    """A higher-is-better primary metric: the dashed front joins the highest means, and a point off it whose
    interval reaches the front's from below is hollow (indistinguishable), one far below it is not."""
    from matplotlib.axes import Axes

    values = {"cheap": (1.0, 0.60, 0.55, 0.65), "best": (2.0, 0.90, 0.85, 0.95),
              "close": (3.0, 0.84, 0.80, 0.88), "poor": (4.0, 0.30, 0.25, 0.35)}
    drawn, real_plot = [], Axes.plot

    def plot(ax, *args, **kwargs):  # pareto_plot draws only the front as a line
        drawn.append((list(args[0]), list(args[1])))
        return real_plot(ax, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", plot)
    pareto_plot(_points(values, "precision"), "precision", tmp_path / "p.png", "precision")
    assert drawn == [([1.0, 2.0], [0.60, 0.90])]
    assert indistinguishable(_points(values, "precision"), "precision") == {"close"}
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    drawn.clear()  # the same numbers read as a distance: the front is the cheap point alone, then the poor one
    pareto_plot(_points(values, "fid"), "fid", tmp_path / "f.png", "fid")
    assert drawn == [([1.0, 4.0], [0.60, 0.30])]
    assert indistinguishable(_points(values, "fid"), "fid") == set()


def test_the_plot_counts_cpu_scale_models_in_mflop(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    labels, drawn = [], []
    monkeypatch.setattr(Axes, "set_xlabel", lambda ax, text, *a, **k: labels.append(text))
    monkeypatch.setattr(Axes, "plot", lambda ax, *args, **k: drawn.append(list(args[0])))
    small = {"a": (0.04, 0.6, 0.5, 0.7), "b": (0.08, 0.9, 0.8, 1.0)}  # GFLOPs of CPU-scale models
    pareto_plot(_points(small, "precision"), "precision", tmp_path / "p.png", "precision")
    assert labels == ["MFLOP per image, true count (fvcore convention)"]
    assert drawn == [pytest.approx([40.0, 80.0])]


def test_cli_dry_run_and_report(tmp_path):
    from typer.testing import CliRunner

    from mpdit_bench.cli import app

    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    (exp_dir / "rep.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    runner = CliRunner()
    dry = runner.invoke(app, ["sweep", str(exp_dir / "rep.yaml"), "--scale", "cpu", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    for spec in load_experiment(exp_dir / "rep.yaml").runs("cpu"):
        assert spec.run_id in dry.output
    assert "device-hours" in dry.output and not (tmp_path / "results").exists()  # nothing executed
    bad = runner.invoke(app, ["sweep", str(exp_dir / "rep.yaml"), "--scale", "paper", "--dry-run"])
    assert bad.exit_code == 2
    out = tmp_path / "reports"
    results = tmp_path / "results"
    write_record(results, load_experiment(exp_dir / "rep.yaml").runs("cpu")[0], {"fd_fmnist_proxy": 1.0})
    rep = runner.invoke(app, ["report", str(exp_dir / "rep.yaml"), "--results", str(results), "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    md = (out / "rep_cpu.md").read_text()  # one record: every other run of the file listed as not run
    assert md.count("| not run |") == 3 and "index.md" not in rep.output  # one experiment: no index


def test_report_on_a_folder_without_records_refuses(tmp_path):
    from typer.testing import CliRunner

    from mpdit_bench.cli import app

    exp_dir, empty, out = tmp_path / "experiments", tmp_path / "empty", tmp_path / "reports"
    exp_dir.mkdir(), empty.mkdir()
    (exp_dir / "rep.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    for args in (["report", "--results", str(empty)], ["report", str(exp_dir / "rep.yaml"), "--results", str(empty)]):
        rep = CliRunner().invoke(app, [*args, "--out", str(out)])
        assert rep.exit_code == 2, rep.output
        assert str(empty) in " ".join(rep.output.split()) and "record.json" in rep.output
        assert "Traceback" not in rep.output
    assert not out.exists()  # nothing written


def test_report_of_every_experiment_skips_the_run_configs_beside_them(tmp_path):
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    (exp_dir / "rep.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    (exp_dir / "train_small.yaml").write_text(yaml.safe_dump({"model": "MPDiT-B", "train": {"steps": 2}}))
    write_record(tmp_path / "results", load_experiment(exp_dir / "rep.yaml").runs("cpu")[0], {"fd_fmnist_proxy": 1.0})
    written = write_reports(tmp_path / "results", tmp_path / "reports", experiments_dir=exp_dir)
    assert sorted(p.name for p in written if p.suffix == ".md") == ["index.md", "rep_cpu.md"]
