"""The published tables as package data, our counts beside them, and `mpdit-bench tables` filled from records."""

import json

import pytest
from typer.testing import CliRunner

from mpdit_bench import paper as published
from mpdit_bench.cli import app
from mpdit_bench.config import ConfigError
from mpdit_bench.models import get_preset, list_models
from mpdit_bench.paper.figures import PPFLOW_ROWS, PRESET_ROWS, paper_figures
from mpdit_bench.reports.paper_tables import build_tables
from mpdit_bench.counting import analytic_counts

runner = CliRunner()
ARCH_ROWS = [r for t in ("3", "4", "5", "6", "7") for r in published.table(f"mpdit/{t}").rows]


def test_every_printed_row_is_bundled():
    """Row counts of every table as printed (TABLES.md), every row with a value for every printed column."""
    counts = {t.ref: len(t.rows) for t in published.tables()}
    assert counts == {"mpdit/1": 30, "mpdit/2": 2, "mpdit/3": 5, "mpdit/4": 8, "mpdit/5": 6, "mpdit/6": 5,
                      "mpdit/7": 5, "mpdit/8": 16, "mpdit/9": 4, "mpdit/sec7": 2, "ppflow/main": 8,
                      "ppflow/ablation-adaptation": 3, "ppflow/ablation-design": 4, "ppflow/flexidit": 2}
    for t in published.tables():
        value_columns = {c.key for c in t.columns if c.kind != "recipe"}
        for r in t.rows:
            assert set(r.values) == value_columns, (r.ref, value_columns - set(r.values))


def test_presets_read_their_figures_from_the_tables():
    assert paper_figures("MPDiT-B").params_m == published.row("mpdit/3/mpdit-b").values["params"]
    assert paper_figures("SiT-B/2").gflops == published.row("mpdit/1/sit-b-2-e80").values["gflops"]
    assert paper_figures("PPF-B-3").relative_flops_pct == published.row("ppflow/main/ppf-b-3").values["test_flops"]
    assert paper_figures("b").source == published.table("mpdit/3").name  # shorthands resolve to the preset
    assert paper_figures("MPDiT-L") is None  # printed nowhere


def test_every_preset_with_figures_names_rows_that_exist():
    named = {**PRESET_ROWS, **{name: (row,) for name, row in PPFLOW_ROWS.items()}}
    assert set(named) <= set(list_models())
    for name, rows in named.items():
        for ref in rows:
            published.row(ref)  # raises ConfigError for a row the tables do not hold
        assert paper_figures(name) is not None


def test_figures_belong_to_the_unmodified_preset_only():
    preset = get_preset("MPDiT-B").config
    assert paper_figures("MPDiT-B", preset) == paper_figures("MPDiT-B")
    assert paper_figures("MPDiT-B", preset.replace(refine_depth=4)) is None


# DiT-B/2's 130.0 is DiT's own "130M" rounded; its parameters (sum of numel) are 130.51 M.
PARAMS_TOLERANCE_M = {"mpdit/3/dit-b-2": 0.52}


@pytest.mark.parametrize("row", ARCH_ROWS, ids=[r.ref for r in ARCH_ROWS])
def test_tables_3_to_7_rows_reproduce_params_and_paper_convention_gflops(row):
    counts = analytic_counts(row.model_config())
    assert abs(counts["params"] / 1e6 - row.values["params"]) <= PARAMS_TOLERANCE_M.get(row.ref, 0.1)
    assert abs(counts["gflops_paper_convention"] / row.values["gflops"] - 1) <= 0.005


def test_bad_references_name_what_is_allowed():
    with pytest.raises(ConfigError, match="'paper_row'.*mpdit-b-k4"):
        published.row("mpdit/4/mpdit-b-k5")
    with pytest.raises(ConfigError, match="'paper_table'.*mpdit/9"):
        published.table("mpdit/10")


def record(run_id, row, metrics, cfg_scale=1.0, scale="paper"):
    return {"run_id": run_id, "experiment": "x", "scale": scale, "label": run_id,
            "spec": {"paper_row": row, "sample": {"cfg_scale": cfg_scale}}, "metrics": metrics}


def write_records(tmp_path, *records):
    for rec in records:
        path = tmp_path / "results" / rec["experiment"] / rec["scale"] / rec["run_id"] / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(rec))
    return tmp_path / "results"


def test_tables_json_fills_exactly_the_row_a_finished_run_names(tmp_path):
    results = write_records(tmp_path, record("r1", "mpdit/4/mpdit-b-k4", {"fid": 25.0, "sfid": None}))
    out = runner.invoke(app, ["tables", "--paper", "mpdit", "--json", "--results", str(results)])
    assert out.exit_code == 0, out.output
    tables = json.loads(out.stdout)
    assert [t["id"] for t in tables] == [t.id for t in published.tables("mpdit")]
    filled = [(t["id"], r["key"], c["key"]) for t in tables for r in t["rows"] for c in t["columns"]
              if c["kind"] == "metric" and r["ours"][c["key"]] is not None]
    assert filled == [("4", "mpdit-b-k4", "fid")]
    row = next(r for t in tables if t["id"] == "4" for r in t["rows"] if r["key"] == "mpdit-b-k4")
    assert row["label"] == "MPDiT-B k = 4" and row["paper"]["fid"] == 26.94 and row["runs"] == ["r1"]
    assert row["gap"]["fid"] == pytest.approx(25.0 - 26.94)
    assert row["ours"]["params"] == pytest.approx(104.8, abs=0.05)  # counted, not copied
    assert row["ours"]["gflops"] == pytest.approx(13.25, abs=0.005)
    assert row["ours"]["gflops_paper_convention"] == pytest.approx(13.9, abs=0.05)


def markdown_cells(tmp_path, results, table="4"):
    """Each row's cells of one table as `tables --out` writes it in markdown."""
    out = runner.invoke(app, ["tables", "--paper", "mpdit", "--table", table, "--results", str(results),
                              "--out", str(tmp_path / "md")])
    assert out.exit_code == 0, out.output
    text = (tmp_path / "md" / f"mpdit_table_{table}.md").read_text()
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and not line.startswith("| row")}


def test_a_row_without_a_run_shows_a_dash_never_zero(tmp_path):
    results = write_records(tmp_path, record("r1", "mpdit/4/mpdit-b-k4", {"fid": 25.0}))
    lines = markdown_cells(tmp_path, results)
    assert lines["MPDiT-B k = 4"][-1] == "25.000 (-1.94)"
    for label in ("MPDiT-B k = 6 (default)", "MPDiT-XL k = 8", "DiT-B/2 dagger"):
        assert lines[label][-1] == "—"
    assert not any(cell in ("0", "0.000") for cells in lines.values() for cell in cells)


def test_a_smoke_run_is_marked_in_its_cell(tmp_path):
    smoke = {**record("s", "mpdit/4/mpdit-xl-k4", {"fid": 400.0}), "smoke": True}
    full = record("f", "mpdit/4/mpdit-b-k4", {"fid": 250.0})
    results = write_records(tmp_path, smoke, full)
    cells = {label: row[-1] for label, row in markdown_cells(tmp_path, results).items()}
    assert cells["MPDiT-XL k = 4"] == "400.000 (+388.89) (smoke)" and cells["MPDiT-B k = 4"] == "250.000 (+223.06)"


def test_the_terminal_tables_fit_80_columns_with_each_footnote_once(tmp_path):
    import os
    import subprocess
    import sys

    results = write_records(tmp_path, record("r1", "mpdit/4/mpdit-b-k4", {"fid": 25.0}))
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "mpdit_bench", "tables", "--paper", "mpdit", "--results",
                           str(results)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and not any(line.startswith("|") for line in lines)
    for t in published.tables("mpdit"):  # every table, each with its title
        assert any(line.startswith(t.name) for line in lines), t.name
    footnote = "¹ GFLOPs (paper) counted in the MPDiT paper's convention"
    assert sum(line.startswith(footnote) for line in lines) == 1 and len(published.tables("mpdit")) > 1
    table4 = done.stdout[done.stdout.index("MPDiT Table 4"):done.stdout.index("MPDiT Table 5")]
    assert "26.94" in table4 and "25.000 (-1.94)" in table4  # the paper's figure over ours in one column
    assert "metrics: runs at scale paper in " + str(results) in " ".join(done.stdout.split())


@pytest.mark.parametrize("scales, asked, shown, hint", [
    (["paper"], None, "paper", None),  # the records' one scale
    (["cpu"], None, "cpu", "names a row"),
    (["cpu", "paper"], None, "cpu", None),  # mixed: `sweep`'s default
    ([], None, "cpu", "no records of scale cpu in {results}; records found: none"),
    (["paper", "paper"], "cpu", "cpu", "no records of scale cpu in {results}; records found: 2 of scale paper "
                                       "(--scale paper)"),
])
def test_tables_scale_follows_the_records_and_explains_empty_metric_columns(tmp_path, scales, asked, shown, hint):
    rows = {"paper": "mpdit/4/mpdit-b-k4", "cpu": "mpdit/4/mpdit-b-k6"}
    recs = [record(f"r{i}", rows[s] if (s == "paper" or len(scales) > 1) else "mpdit/9/none", {"fid": 20.0 + i},
                   scale=s) for i, s in enumerate(scales)]
    results = write_records(tmp_path, *recs) if recs else tmp_path / "empty"
    args = ["tables", "--paper", "mpdit", "--table", "4", "--json", "--results", str(results)]
    out = runner.invoke(app, args + (["--scale", asked] if asked else []))
    assert out.exit_code == 0, out.output
    (table,) = json.loads(out.stdout)
    assert table["scale"] == shown
    note = " ".join(out.stderr.split())
    assert f"metrics: runs at scale {shown}" in note or "no records of scale" in note
    if hint is None:
        assert "every metric cell is" not in note and "no records" not in note
    else:
        assert hint.format(results=results) in note


def test_guided_and_unguided_runs_fill_their_own_columns_and_cpu_runs_show_no_gap():
    recs = [record("a", "mpdit/9/mpdit-22-6", {"fid": 10.0}, scale="cpu"),
            record("b", "mpdit/9/mpdit-22-6", {"fid": 3.0}, cfg_scale=1.375, scale="cpu")]
    (t9,) = build_tables("mpdit", "9", recs, scale="cpu")
    row = next(r for r in t9["rows"] if r["key"] == "mpdit-22-6")
    assert (row["ours"]["fid_no_cfg"], row["ours"]["fid_cfg"]) == (10.0, 3.0)
    assert "fid_cfg" not in row["gap"]  # Fashion-MNIST FID is not ImageNet's
    assert row["gap"]["gflops"] == pytest.approx(row["ours"]["gflops"] - 228.4)  # unknown convention: vs true


def test_computed_columns_and_published_only_rows():
    t2, = build_tables("mpdit", "2")
    b = t2["rows"][0]["ours"]
    assert b["ratio"] == pytest.approx(100 * b["gflops_paper_convention"] / 23.02, abs=0.05)
    sec7, = build_tables("mpdit", "sec7")
    assert sec7["rows"][0]["ours"]["fraction"] == pytest.approx(100 * 240 * 59.31 / (1400 * 118.69), abs=0.01)
    t8, = build_tables("mpdit", "8")
    biggan = t8["rows"][0]
    assert not biggan["built"] and biggan["ours"]["params"] is None and biggan["paper"]["params"] == 160


def test_tables_out_writes_markdown_and_refuses_bad_options(tmp_path):
    out = runner.invoke(app, ["tables", "--paper", "ppflow", "--out", str(tmp_path / "md"),
                              "--results", str(tmp_path / "none")])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (tmp_path / "md").iterdir()) == sorted(
        f"ppflow_table_{t.id}.md" for t in published.tables("ppflow"))
    assert "62.0 | 62.10 (+0.10)" in (tmp_path / "md" / "ppflow_table_main.md").read_text()
    bad = runner.invoke(app, ["tables", "--paper", "dit"])
    assert bad.exit_code == 2 and "mpdit, ppflow" in bad.output
    bad = runner.invoke(app, ["tables", "--paper", "mpdit", "--table", "12"])
    assert bad.exit_code == 2 and "'--table'" in bad.output and "sec7" in bad.output
