"""Parameter and FLOP counts: the published figures, and analytic vs fvcore agreement."""

import itertools

import pytest
import torch

from mpdit_bench import components, registry  # noqa: F401 (components fill the registry)
from mpdit_bench.counting import (build_for_counting, conv_transpose_output_extra, count, example_inputs,
                                  fvcore_flops, paper_convention_flops)
from mpdit_bench.models import build_model, list_models, model_config
from mpdit_bench.models.blocks import explicit_attention
from mpdit_bench.counting import count_model, preset_rows
from mpdit_bench.counting import analytic_counts
from mpdit_bench.paper.figures import paper_figures


def meta_params(name: str) -> int:
    """The printed count: a complex spectral weight is one number (param_count)."""
    from mpdit_bench.counting import param_count

    with torch.device("meta"):
        return param_count(build_model(model_config(name)))


@pytest.mark.parametrize("name", ["DiT-B/2", "DiT-B/2+shared", "DiT-B/2+shared+tokens",
                                  "DiT-B/2+shared+tokens+fno", "MPDiT-B", "DiT-XL/2", "MPDiT-XL"])
def test_published_parameter_counts_within_one_percent(name):
    paper = paper_figures(name)
    assert abs(meta_params(name) / 1e6 - paper.params_m) / paper.params_m < 0.01


def test_mpdit_parameter_counts_to_the_published_decimal():
    assert round(meta_params("MPDiT-B") / 1e6, 1) == 104.8
    assert round(meta_params("MPDiT-XL") / 1e6, 1) == 481.2
    assert round(meta_params("DiT-XL/2") / 1e6) == 675


def test_mpdit_b_true_and_paper_convention_gflops():
    r = count_model("b", cross_check=False)
    assert r["model"] == "MPDiT-B" and r["paper_gflops"] == 16.6 and r["paper_params"] == 104.8
    assert round(r["gflops"], 2) == 16.18
    assert round(r["gflops_paper_convention"], 1) == 16.6
    assert abs(r["gflops_paper_convention"] - 16.63) < 0.005


def test_dit_b2_gflops_match_dit_measurement():
    r = count_model("DiT-B/2")
    assert round(r["gflops"], 2) == 23.02
    assert r["params_trainable"] == r["params"] - 256 * 768  # frozen position table
    assert abs(r["gmacs_ptflops"] - r["gflops"]) / r["gflops"] < 0.005


@pytest.mark.slow
def test_dit_xl2_gflops():
    assert abs(count_model("DiT-XL/2", cross_check=False)["gflops"] - 118.68) < 0.01


def test_mpdit_xl_true_and_paper_convention_gflops():
    mp = count_model("xl", cross_check=False)
    assert round(mp["gflops"], 2) == 56.46
    assert round(mp["gflops_paper_convention"], 1) == 59.3 and abs(mp["gflops_paper_convention"] - 59.31) < 0.005


def test_counting_ignores_fused_attention_at_run_time():
    model = build_model(model_config("DiT-S/2", hidden_size=128, num_heads=4)).eval()
    inputs = example_inputs(model.cfg)
    with torch.no_grad():
        fused = model(*inputs)
        with explicit_attention(model):
            explicit = model(*inputs)
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-5)
    assert count(model, cross_check=False)["gflops"] == pytest.approx(model.flops() / 1e9, rel=1e-3)


def unique_presets() -> list[str]:
    """Presets with distinct configs (SiT-* are aliases of DiT-*)."""
    seen, names = set(), []
    for name in list_models():
        if (key := model_config(name).config_hash()) not in seen:
            seen.add(key)
            names.append(name)
    return names


def assert_analytic_matches_fvcore(cfg):
    """At t = 0 (data side): a PPFlow model runs its finest stage there; every stage is checked in
    test_ppflow_counting."""
    model = build_for_counting(cfg)
    x, t, y = example_inputs(cfg)
    total, by_operator = fvcore_flops(model, (x, torch.zeros_like(t), y))
    assert model.flops() == pytest.approx(total, rel=0.005)
    if not cfg.time_patch_sizes:  # the sweep's and report's paper convention == the `flops` command's
        assert analytic_counts(cfg)["gflops_paper_convention"] * 1e9 == pytest.approx(
            paper_convention_flops(cfg, by_operator["linear"] + by_operator.get("conv", 0),
                                   conv_transpose_output_extra(model)), rel=1e-6)


@pytest.mark.parametrize("name", unique_presets())
def test_analytic_agrees_with_fvcore_for_every_preset_structure(name):
    """Each preset's structure (levels, depths, tokens, components) at width 64: cheap on CPU."""
    assert_analytic_matches_fvcore(model_config(name, hidden_size=64, num_heads=4))


@pytest.mark.slow
@pytest.mark.parametrize("name", unique_presets())
def test_analytic_agrees_with_fvcore_for_every_preset_at_full_width(name):
    assert_analytic_matches_fvcore(model_config(name))


GRID = list(itertools.product(registry.names("upsample"), ("mlp", "fno"), (0, 4), ("per_block", "shared"),
                              ((4, 2), (8, 4, 2))))


@pytest.mark.parametrize("upsample,time,m,modulation,patches", GRID)
def test_analytic_agrees_with_fvcore_on_a_grid(upsample, time, m, modulation, patches):
    assert_analytic_matches_fvcore(model_config(
        "MPDiT-B", hidden_size=64, num_heads=4, class_tokens=m, upsample=upsample, time_embedder=time,
        modulation=modulation, patch_sizes=list(patches), depths=[1] * len(patches), input_size=16))


DESIGNS = list(itertools.product(registry.names("upsample"), registry.names("upsample_refine"), (0, 4)))


@pytest.mark.parametrize("expand,refine,m", DESIGNS)
def test_analytic_agrees_with_fvcore_for_every_upsample_design(expand, refine, m):
    assert_analytic_matches_fvcore(model_config(
        "MPDiT-B", hidden_size=64, num_heads=4, class_tokens=m, upsample=expand, upsample_refine=refine,
        upsample_refine_ratio=2, patch_sizes=[8, 4, 2], depths=[1, 1, 1], input_size=16))


@pytest.mark.parametrize("patches,size", [((2,), 64), ((4, 2), 64), ((8, 4, 2), 64), ((16, 8, 4, 2), 32)])
def test_analytic_agrees_with_fvcore_at_other_resolutions(patches, size):
    assert_analytic_matches_fvcore(model_config("MPDiT-B", hidden_size=64, num_heads=4, upsample="conv_transpose",
                                                upsample_refine="conv",
                                                patch_sizes=list(patches), depths=[1] * len(patches),
                                                input_size=size))


def test_overrides_three_levels_and_512px_are_counted():
    r = count_model("b", resolution=512, cross_check=False,
                    overrides={"patch_sizes": [8, 4, 2], "depths": [6, 3, 3], "hidden_size": 128, "num_heads": 4})
    assert r["resolution"] == 512 and r["config"]["depths"] == [6, 3, 3]
    assert r["paper_gflops"] is None  # not the published configuration
    assert r["gflops"] == pytest.approx(r["gflops_analytic"], rel=0.005)


def test_models_listing_covers_every_preset_with_counts():
    rows = {r["model"]: r for r in preset_rows()}
    assert set(rows) == set(list_models())
    assert rows["MPDiT-B"]["params"] == 104_803_760
    assert rows["DiT-B/2"]["gflops_analytic"] == pytest.approx(23.02, abs=0.01)
