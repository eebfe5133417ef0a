"""PPFlow counting: per-stage FLOPs, trajectory average, relative FLOPs of the published presets."""

import json

import pytest
import torch
from typer.testing import CliRunner

from mpdit_bench.cli import app
from mpdit_bench.models import build_model, model_config
from mpdit_bench.counting import count_model, preset_rows, trajectory_flops
from mpdit_bench.paper.figures import paper_figures

torch.set_num_threads(2)
SMALL = dict(hidden_size=64, num_heads=4, num_classes=10, input_size=16)


def meta_model(name):
    with torch.device("meta"):
        return build_model(model_config(name))


# The schedules' relative FLOPs in DiT's counting convention (fvcore, attention counted), as measured for
# PPFlow's stage boundaries.
DIT_CONVENTION_PCT = {"PPF-B-2": 62.08, "PPF-B-3": 49.28, "PPF-XL-2": 62.24, "PPF-XL-3": 49.54}


@pytest.mark.parametrize("name", sorted(DIT_CONVENTION_PCT))
def test_presets_reproduce_the_published_relative_flops(name):
    model = meta_model(name)
    iso = meta_model(name.replace("PPF-", "SiT-").rsplit("-", 1)[0] + "/2")
    relative = 100 * trajectory_flops(model) / iso.flops()
    paper = paper_figures(name)
    assert abs(relative - paper.relative_flops_pct) <= 0.5
    assert abs(relative - DIT_CONVENTION_PCT[name]) <= 0.05  # the convention we count in
    assert model.flops() == iso.flops()  # the finest stage is the isotropic model


def test_count_model_reports_every_stage_and_keeps_the_existing_keys():
    r = count_model("PPF-B-3", 128, dict(hidden_size=64, num_heads=4, depths=[2], num_classes=10),
                    cross_check=False)
    iso = count_model("SiT-B/2", 128, dict(hidden_size=64, num_heads=4, depths=[2], num_classes=10),
                      cross_check=False)
    for key in ("params", "gflops", "gflops_analytic", "gflops_paper_convention", "gmacs_ptflops", "config",
                "config_hash", "paper_params", "paper_gflops"):
        assert key in r
    assert r["paper_relative_flops_pct"] is None  # overridden: not the published preset
    assert r["reference_gflops"] == pytest.approx(iso["gflops"], rel=1e-12)
    assert [s["patch"] for s in r["stages"]] == ["4x4", "2x4", "2x2"]
    assert [s["tokens"] for s in r["stages"]] == [16, 32, 64]
    for s in r["stages"]:
        assert s["gflops"] == pytest.approx(s["gflops_analytic"], rel=1e-3)  # fvcore agrees with the closed form
    assert r["stages"][0]["gflops"] < r["stages"][1]["gflops"] < r["stages"][2]["gflops"]
    expected = sum(s["time_fraction"] * s["gflops"] for s in r["stages"])
    assert r["gflops_expected"] == pytest.approx(expected)
    assert r["relative_flops_pct"] == pytest.approx(100 * expected / iso["gflops"])
    json.dumps(r)


def test_combined_counts_fewer_coarse_tokens_at_high_noise():
    r = count_model("MPDiT-B+PPF-2", 128, dict(hidden_size=64, num_heads=4, depths=[1, 1], num_classes=10,
                                               class_tokens=2), cross_check=False)
    assert [s["tokens"] for s in r["stages"]] == [4, 16]
    assert [s["gflops"] for s in r["stages"]] == pytest.approx([s["gflops_analytic"] for s in r["stages"]],
                                                                rel=1e-3)
    assert r["relative_flops_pct"] < 100


def test_preset_rows_and_flops_cli_show_the_trajectory_average():
    rows = {r["model"]: r for r in preset_rows("PPF-B-*")}
    assert rows["PPF-B-2"]["gflops_expected_analytic"] < rows["PPF-B-2"]["gflops_analytic"]
    assert rows["PPF-B-3"]["gflops_expected_analytic"] < rows["PPF-B-2"]["gflops_expected_analytic"]
    args = ["flops", "-m", "PPF-B-2", "--resolution", "128", "--no-cross-check",
            "--set", "hidden_size=64", "--set", "num_heads=4", "--set", "depths=[1]"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4x4" in result.output and "relative to the model without the schedule" in result.output
    result = CliRunner().invoke(app, args + ["--json"])
    data = json.loads(result.output)
    assert data["stages"][0]["patch"] == "4x4" and "gflops" in data
