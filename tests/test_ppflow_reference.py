"""PPFlow's three-level checkpoints (PPF-XL-3.pt) import to PPFlow's function.

The chain: an independent reference forward of a PPFlow state dict (tests/ppflow_reference.py) reproduces
the outputs that PPFlow's own code computed on the two-level fixture; the suite's import of a random
three-level state dict in PPFlow's names then agrees with that reference in every stage, plain and guided.
What only three levels have (the 2x4 stage's space-to-depth, output head, position table and level row) is
so held against the conventions the two-level outputs confirm.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ppflow_reference as ref
from mpdit_bench.checkpoint import load as load_checkpoint
from mpdit_bench.engine.sampling import guided_velocity, load_sampling_model
from mpdit_bench.imports import write_suite_checkpoint
from mpdit_bench.models import build_model, model_config
from mpdit_bench.ppflow.convert import convert_isotropic_to_ppflow, ppflow_config

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ppflow_tiny"
ATOL = 1e-5  # float32 rounding
HEADS, NULL, SCALES = 2, 10, [1.5, 2.0, 3.0]
# PPFlow's t: inside each stage and on both boundaries (coarse side inclusive)
TIMES = [0.2, 0.5, 0.6, 0.75, 0.9]


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 4, 16, 16, generator=g), torch.tensor([1, 7, 4])


# ---- the reference is PPFlow's function where the authors' outputs exist ---------------------------------
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"PPFlow fixture not found at {FIXTURE}")


@needs_fixture
def test_reference_reproduces_the_authors_two_level_outputs():
    saved = torch.load(FIXTURE / "reference.pt", weights_only=True)
    state = torch.load(FIXTURE / "released.pt", weights_only=True)
    stages = set()
    for case in saved["per_t"]:
        t = float(case["t"][0])
        stages.add(ref.stage_of(t, 2))
        assert ref.stage_of(t, 2) == case["stage"]
        err = (ref.forward(state, saved["x"], t, saved["y"], HEADS) - case["out_wo_cfg"]).abs().max().item()
        assert err < ATOL, f"t={t}: max abs error {err:.2e}"
        c = case["cfg"]
        B = c["x_in"].shape[0] // 2
        guided = ref.forward_guided(state, c["x_in"][:B], float(c["t_in"][0]), c["y_in"][:B], NULL,
                                    c["cfg_scales"], HEADS)
        err = (guided - c["out"]).abs().max().item()
        assert err < ATOL, f"t={t} guided: max abs error {err:.2e}"
    assert stages == {0, 1}


@needs_fixture
def test_reference_position_tables_are_the_authors():
    state = torch.load(FIXTURE / "released.pt", weights_only=True)
    for stage, merge in enumerate(ref.merges(2)):
        assert torch.allclose(ref.position_table(64, 8, merge), state[f"pos_embed.{stage}"], atol=1e-6)


def test_fold_is_the_inverse_of_unfold_and_orders_channels_as_documented():
    x = torch.arange(2 * 3 * 4 * 8, dtype=torch.float32).reshape(2, 3, 4, 8)
    for fh, fw in ((2, 2), (1, 2)):
        z = ref.fold(x, fh, fw)
        assert torch.equal(ref.unfold(z, fh, fw), x)
        for c, i, j in ((0, 0, 1), (2, fh - 1, 1), (1, fh - 1, 0)):
            assert torch.equal(z[:, c * fh * fw + i * fw + j], x[:, c, i::fh, j::fw])


# ---- the suite's import of three levels agrees with the reference ----------------------------------------
@pytest.fixture(scope="module")
def three_levels(tmp_path_factory):
    """(PPFlow state dict, the suite model imported from it as `mpdit-bench import` writes it, its config)."""
    state = ref.random_state(levels=3, seed=5)
    path = tmp_path_factory.mktemp("ppf3") / "PPF-3.pt"
    torch.save(state, path)
    out = path.with_name("imported.pt")
    write_suite_checkpoint(path, out, num_heads=HEADS)
    model, cfg = load_sampling_model(load_checkpoint(out), use_ema=True, device=torch.device("cpu"))
    return state, model, cfg


def suite_prediction(model, cfg, x, t_ppflow, y):
    """PPFlow's prediction (data - noise at its t) from the suite model (noise - data at 1 - t)."""
    tt = torch.full((x.shape[0],), 1 - t_ppflow)
    with torch.no_grad():
        return -model(x, tt, y)[:, :cfg.in_channels]


def test_three_level_import_reads_the_schedule(three_levels):
    _, model, cfg = three_levels
    assert cfg.time_patch_sizes == ("4x4", "2x4", "2x2") and cfg.time_boundaries == (0.5, 0.25)
    assert cfg.learn_sigma and model.stage_grid(1) == (8, 4)


@pytest.mark.parametrize("t", TIMES)
def test_three_level_import_is_ppflows_function(three_levels, t):
    state, model, cfg = three_levels
    x, y = batch()
    expected = ref.forward(state, x, t, y, HEADS)
    err = (suite_prediction(model, cfg, x, t, y) - expected).abs().max().item()
    assert err < ATOL, f"t={t} (stage {ref.stage_of(t, 3)}): max abs error {err:.2e}"
    assert expected.abs().max() > 0.1  # a non-trivial function


@pytest.mark.parametrize("t", TIMES)
def test_three_level_import_is_ppflows_guided_function(three_levels, t):
    state, model, cfg = three_levels
    x, y = batch()
    B = x.shape[0]
    expected = ref.forward_guided(state, x, t, y, NULL, SCALES, HEADS)[:B]  # their conditional half
    v = guided_velocity(model, cfg.in_channels, cfg.num_classes, SCALES, guided_channels=ref.GUIDED)
    with torch.no_grad():
        out = -v(x, 1 - t, y)
    err = (out - expected).abs().max().item()
    assert err < ATOL, f"t={t} guided: max abs error {err:.2e}"
    plain = ref.forward(state, x, t, y, HEADS)
    assert (expected[:, :ref.GUIDED] - plain[:, :ref.GUIDED]).abs().max() > 100 * ATOL  # guidance acts


def _mislaid(state: dict, what: str) -> dict:
    """``state`` with one of the 2x4 stage's conventions taken the other way."""
    state = dict(state)
    D, C = state["x_embedder.proj.weight"].shape[:2]
    if what == "level rows fine first":
        state["level_embedder.embedding_table.weight"] = state["level_embedder.embedding_table.weight"].flip(0)
    elif what == "fold channels j-major":  # channel j C + c instead of c 2 + j
        w = state["x_embedder.proj2.weight"]
        state["x_embedder.proj2.weight"] = w.reshape(D, C, 2, *w.shape[2:]).transpose(1, 2).reshape(w.shape)
    elif what == "head channels j-major":  # rows (p, q, j, c) instead of (p, q, c, j)
        w = state["final_layer.linear2.weight"]
        p = state["x_embedder.proj.weight"].shape[-1]
        state["final_layer.linear2.weight"] = w.reshape(p * p, 2 * C, 2, D).transpose(1, 2).reshape(w.shape)
    elif what == "position rows and columns swapped":
        table = state["pos_embed.1"]
        half = table.shape[-1] // 2
        state["pos_embed.1"] = torch.cat([table[..., half:], table[..., :half]], dim=-1)
    return state


@pytest.mark.parametrize("what", ["level rows fine first", "fold channels j-major", "head channels j-major",
                                  "position rows and columns swapped"])
def test_the_comparison_sees_each_convention_of_the_2x4_stage(three_levels, what):
    """The checks above would fail if the import took any of the open conventions the other way."""
    state, _, _ = three_levels
    x, y = batch()
    mislaid = _mislaid(state, what)
    err = max((ref.forward(mislaid, x, t, y, HEADS) - ref.forward(state, x, t, y, HEADS)).abs().max().item()
              for t in (0.2, 0.6, 0.9))  # one t per stage
    assert err > 100 * ATOL, what


# ---- the suite's own position tables (models built from a config, `convert --to ppflow`) ----------------
def test_suite_position_tables_follow_ppflows_rule():
    cfg = model_config("PPF-B-3", depths=[1], hidden_size=64, num_heads=2, input_size=16, num_classes=10)
    model = build_model(cfg)
    assert model.stage_grid(1) == (8, 4)
    for stage, merge in enumerate(ref.merges(3)[:-1]):
        table = model.stage_pos_embed[stage].detach()
        assert torch.allclose(table, ref.position_table(64, 8, merge), atol=1e-6), f"stage {stage}"
    assert torch.allclose(model.pos_embed[0].detach(), ref.position_table(64, 8, (1, 1)), atol=1e-6)

    source = build_model(cfg.replace(source="test", time_patch_sizes=[], time_boundaries=[]))
    converted = convert_isotropic_to_ppflow(source, ppflow_config(source.cfg, levels=3))
    for stage, merge in enumerate(ref.merges(3)[:-1]):
        assert torch.allclose(converted[f"stage_pos_embed.{stage}"], ref.position_table(64, 8, merge), atol=1e-6)
