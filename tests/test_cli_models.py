"""The `models`, `flops` and `components` commands."""

import json

from typer.testing import CliRunner

from mpdit_bench.cli import app

runner = CliRunner()


def test_flops_json_has_every_count_and_the_paper_figures():
    result = runner.invoke(app, ["flops", "--model", "b", "--json", "--no-cross-check"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    for key in ("model", "resolution", "params", "params_trainable", "gflops", "gflops_paper_convention",
                "gflops_analytic", "gmacs_ptflops", "paper_gflops", "paper_params", "config", "config_hash"):
        assert key in r
    assert r["model"] == "MPDiT-B" and r["params"] == 104_803_760 and r["paper_gflops"] == 16.6
    assert r["gmacs_ptflops"] is None  # cross-check switched off, reported as absent, not zero


def test_flops_accepts_overrides_and_prints_a_table():
    result = runner.invoke(app, ["flops", "-m", "DiT-S/4", "--set", "patch_sizes=8,4", "--set", "refine_depth=4",
                                 "--no-cross-check"])
    assert result.exit_code == 0, result.output
    assert "paper convention" in result.stdout and "[4, 8]" not in result.stdout


def test_flops_refuses_bad_overrides_before_building():
    result = runner.invoke(app, ["flops", "-m", "b", "--set", "num_heads=7", "--json"])
    assert result.exit_code == 2
    assert "num_heads" in result.output and "7" in result.output and "divisor of hidden_size=768" in result.output
    result = runner.invoke(app, ["flops", "-m", "b", "--set", "heads=8"])
    assert result.exit_code == 2 and "'heads'" in result.output


def test_models_lists_presets_as_json_lines():
    result = runner.invoke(app, ["models", "MPDiT-*", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    names = [r["model"] for r in rows]
    assert names[:3] == ["MPDiT-B", "MPDiT-L", "MPDiT-XL"] and all(n.startswith("MPDiT-") for n in names)
    assert rows[2]["paper_params"] == 481.2


def test_components_lists_every_kind():
    result = runner.invoke(app, ["components"])
    assert result.exit_code == 0
    for word in ("upsample", "conv_transpose", "time_embedder", "fno", "modulation", "shared"):
        assert word in result.stdout


def test_models_table_fits_80_columns_without_cutting_a_name():
    from rich.console import Console

    from mpdit_bench.cli.render import models_table
    from mpdit_bench.counting import preset_rows

    rows = preset_rows()
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    console.print(models_table(rows, 256))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    first_cells = [line.split()[0] for line in lines if line.strip()]
    for r in rows:
        assert r["model"] in first_cells  # whole, on one line
    ppf = next(line for line in lines if line.split() and line.split()[0] == "PPF-B-3")
    by_name = {r["model"]: r for r in rows}
    assert f"{by_name['PPF-B-3']['gflops_expected_analytic']:.2f}ᵃ" in ppf  # the trajectory average
    assert f"{by_name['PPF-B-3']['gflops_analytic']:.2f}" not in ppf        # not the fine stage's 23.02
    mpdit = next(line for line in lines if line.split() and line.split()[0] == "MPDiT-B")
    assert "16.6¹" in mpdit and "23.02²" in next(line for line in lines if line.startswith(" SiT-B/2 "))
