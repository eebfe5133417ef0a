"""A model with a patch schedule over time: stage selection, shapes for every stage, position tables, packing, t sampling, CFG."""

import pytest
import torch

import mpdit_bench.models  # noqa: F401
from _random_weights import randomised
from mpdit_bench import ppflow
from mpdit_bench.config import ConfigError
from mpdit_bench.models import build_model, model_config
from mpdit_bench.models.blocks import Attention, TransformerBlock
from mpdit_bench.components.embeddings import sincos_2d
from mpdit_bench.models.multipatch import MultiPatchDiT
from mpdit_bench.ppflow.modules import depth_to_space, space_to_depth

torch.set_num_threads(2)
SMALL = dict(hidden_size=64, num_heads=4, num_classes=10, input_size=16)
PPF3 = dict(time_patch_sizes=["4x4", "2x4", "2x2"], time_boundaries=[0.5, 0.25])


def ppf(levels=3, **kw):
    sched = PPF3 if levels == 3 else dict(time_patch_sizes=["4x4", "2x2"], time_boundaries=[0.5])
    torch.manual_seed(0)
    return randomised(build_model(model_config("SiT-S/2", depths=[2], **SMALL, **sched, **kw)))


def combined():
    torch.manual_seed(0)
    return randomised(build_model(model_config("MPDiT-B", depths=[1, 1], **SMALL, time_patch_sizes=["8x8", "4x4"],
                                               time_boundaries=[0.5])))


def inputs(batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 16, 16, generator=g), torch.arange(batch) % 11  # label 10 = null class


def test_stage_selection_at_the_boundaries():
    sched = ppf().schedule
    t = torch.tensor([1.0, 0.75, 0.5, 0.4999, 0.25, 0.2499, 0.0])
    assert sched.stage_of(t).tolist() == [0, 0, 0, 1, 1, 2, 2]
    # PPFlow's own time (0 noise, 1 data): t_pp <= 0.5 is 4x4, 0.5 < t_pp <= 0.75 is 4x2, t_pp > 0.75 is 2x2.
    t_pp = torch.tensor([0.0, 0.5, 0.5001, 0.75, 0.7501, 1.0])
    assert [sched.name(s) for s in sched.stage_of(1 - t_pp).tolist()] == ["4x4", "4x4", "2x4", "2x4", "2x2", "2x2"]
    assert sched.fractions() == (0.5, 0.25, 0.25)
    assert sched.time_range(0) == (0.5, 1.0) and sched.time_range(2) == (0.0, 0.25)


@pytest.mark.parametrize("make", [ppf, combined], ids=["ppflow", "mpdit+ppflow"])
def test_every_stage_has_the_right_shapes_and_tokens(make):
    model = make()
    x, y = inputs()
    for s in range(model.schedule.num_stages):
        lo, hi = model.schedule.time_range(s)
        t = torch.full((4,), (lo + hi) / 2)
        with torch.no_grad():
            out = model(x, t, y)
        assert out.shape == (4, model.cfg.out_channels, 16, 16)
        assert torch.equal(out, model(x, t, y, stage=s))
        assert model.embed(x, s).shape == (4, model.stage_tokens(s), 64)
    rows, cols = model.schedule.shapes[0]
    assert model.stage_tokens(0) == (16 // rows) * (16 // cols)


@pytest.mark.parametrize("make", [ppf, combined], ids=["ppflow", "mpdit+ppflow"])
def test_mixed_batch_is_grouped_by_stage(make):
    model = make()
    x, y = inputs()
    t = torch.tensor([0.9, 0.1, 0.3, 0.6])
    stages = model.schedule.stage_of(t)
    with torch.no_grad():
        out = model(x, t, y)
        for i in range(4):
            alone = model(x[i:i + 1], t[i:i + 1], y[i:i + 1], stage=int(stages[i]))
            torch.testing.assert_close(out[i:i + 1], alone, rtol=1e-5, atol=1e-6)
        other = model(x[:1], t[:1], y[:1], stage=model.schedule.fine_stage)
    assert not torch.allclose(out[:1], other)  # the stage matters
    with pytest.raises(ValueError, match="stage"):
        model(x, t, y, attn_mask=torch.ones(64, 64, dtype=torch.bool))


def test_fine_stage_is_the_base_model():
    model = combined()
    base = MultiPatchDiT(model.cfg.replace(time_patch_sizes=[], time_boundaries=[]))
    missing, unexpected = base.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith(("stage_", "level_embed")) for k in unexpected)
    x, y = inputs()
    t = torch.full((4,), 0.2)
    with torch.no_grad():
        model.level_embed.weight.zero_()
        assert torch.equal(model(x, t, y), base.eval()(x, t, y))


def test_level_embedding_starts_at_zero_and_enters_the_conditioning():
    fresh = build_model(model_config("SiT-S/2", depths=[1], **SMALL, **PPF3))
    assert isinstance(fresh, MultiPatchDiT) and fresh.schedule is not None and torch.count_nonzero(fresh.level_embed.weight) == 0
    model = ppf()
    x, y = inputs()
    t = torch.full((4,), 0.1)
    with torch.no_grad():
        before = model(x, t, y)
        model.level_embed.weight[2] += 1.0
        assert not torch.allclose(before, model(x, t, y))


def test_position_tables_sit_on_the_fine_grid_with_stride_along_merged_axes():
    model = ppf()
    fine = sincos_2d(64, 8)  # 16 / p=2 -> 8 x 8
    fine = torch.from_numpy(fine).float().view(8, 8, 64)
    torch.testing.assert_close(model.stage_pos_embed[0][0].view(4, 4, 64), fine[::2, ::2])  # 4x4: both axes
    torch.testing.assert_close(model.stage_pos_embed[1][0].view(8, 4, 64), fine[:, ::2])  # 2 rows x 4 cols
    torch.testing.assert_close(model.pos_embed[0][0].view(8, 8, 64), fine)


def test_space_to_depth_is_lossless_and_matches_pixel_unshuffle():
    x = torch.randn(2, 3, 8, 12)
    for fh, fw in [(2, 2), (1, 2), (2, 1), (2, 4)]:
        assert torch.equal(depth_to_space(space_to_depth(x, fh, fw), fh, fw), x)
    assert torch.equal(space_to_depth(x, 2, 2), torch.nn.functional.pixel_unshuffle(x, 2))


# ---- Patch n' Pack -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("class_tokens", [0, 3])
def test_packed_output_equals_unpacked(class_tokens):
    model = ppf(class_tokens=class_tokens, modulation="shared" if class_tokens else "per_block")
    x, y = inputs(batch=6)
    t = torch.rand(6, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.5
    with torch.no_grad():
        torch.testing.assert_close(ppflow.forward_packed(model, x, t, y, stage=0, per_sequence=3),
                                   model(x, t, y, stage=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("class_tokens", [0, 3])
def test_mixed_stage_batch_runs_packed_in_one_pass(class_tokens, monkeypatch):
    model = ppf(class_tokens=class_tokens)
    x, y = inputs(batch=7)
    t = torch.tensor([0.1, 0.9, 0.3, 0.7, 0.6, 0.4, 0.55])  # stages 2, 0, 1, 0, 0, 1, 0
    calls = []
    monkeypatch.setattr(model, "forward_stage", lambda *a, **k: calls.append(a))  # must not be used
    with torch.no_grad():
        packed = ppflow.forward_packed(model, x, t, y)
    assert not calls
    monkeypatch.undo()
    with torch.no_grad():
        torch.testing.assert_close(packed, model(x, t, y), rtol=1e-5, atol=1e-5)
    # 4 coarse samples (16 tokens) share one 64-token sequence, the two 2x4 ones another (m = 0);
    # with 3 class tokens per segment only 3 coarse ones fit in 67 tokens.
    lengths = [16 + class_tokens] * 4 + [32 + class_tokens] * 2 + [64 + class_tokens]
    assert ppflow.assign_sequences(lengths, 64 + class_tokens)[-1][0] == (2 if class_tokens == 0 else 3)


def _perturbation_leak(model, **kw):
    x, y = inputs(batch=4)
    t = torch.tensor([0.9, 0.8, 0.7, 0.6])
    x2 = x.clone()
    x2[0] += torch.randn_like(x2[0])  # change sample 0 only; all four share one sequence
    with torch.no_grad():
        a = ppflow.forward_packed(model, x, t, y, **kw)
        b = ppflow.forward_packed(model, x2, t, y, **kw)
    assert not torch.allclose(a[0], b[0])
    return (a[1:] - b[1:]).abs().max().item()


@pytest.mark.parametrize("kw", [{}, dict(stage=0, per_sequence=2)], ids=["mixed", "per_sequence"])
def test_packed_samples_cannot_see_each_other(kw, monkeypatch):
    model = ppf()
    assert _perturbation_leak(model, **kw) == 0.0
    # The check can fail: without the block-diagonal mask the perturbation reaches the neighbours.
    monkeypatch.setattr(ppflow.packing, "segment_mask", lambda ids: torch.ones(ids.shape[0], 1, ids.shape[1], ids.shape[1],
                                                                        dtype=torch.bool))
    assert _perturbation_leak(model, **kw) > 1e-4


def test_block_diagonal_mask_and_float_masks_refused():
    mask = ppflow.block_diagonal_mask([2, 3])
    assert mask.dtype == torch.bool and mask.shape == (5, 5)
    assert mask[:2, :2].all() and mask[2:, 2:].all() and not mask[:2, 2:].any() and not mask[2:, :2].any()
    with pytest.raises(TypeError, match="boolean"):
        Attention(16, 2)(torch.randn(1, 5, 16), mask.float())


def test_per_token_modulation_equals_broadcast_modulation():
    block = TransformerBlock(32, 4, 4.0).eval()
    h, mod = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    with torch.no_grad():
        torch.testing.assert_close(block(h, mod), block(h, mod[:, :, None].expand(2, 6, 5, 32)))


# ---- training times and guidance ------------------------------------------------------------------------------
def test_stage_times_follow_the_proportions_and_stay_inside_their_stage():
    model = ppf()
    g = torch.Generator().manual_seed(0)
    t = ppflow.sample_stage_times(8, model.schedule, [0.5, 0.25, 0.25], generator=g)
    assert model.schedule.stage_of(t).tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    assert ((t >= 0) & (t <= 1)).all()
    again = ppflow.sample_stage_times(8, model, [0.5, 0.25, 0.25], generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    t = ppflow.sample_stage_times(1000, model.cfg, generator=g)  # default: each stage's share of [0, 1]
    assert torch.bincount(model.schedule.stage_of(t)).tolist() == [500, 250, 250]
    assert ppflow.stage_counts(7, [1, 1]) in ([4, 3], [3, 4])
    with pytest.raises(ConfigError):
        ppflow.sample_stage_times(8, model.schedule, [0.5, 0.5])


def test_stage_level_guidance():
    model = ppf(levels=2)
    t = torch.tensor([0.9, 0.5, 0.49, 0.1])
    assert ppflow.guidance_scale_at(t, [1.0, 3.0], model).tolist() == [1.0, 1.0, 3.0, 3.0]
    with pytest.raises(ConfigError):
        ppflow.guidance_scale_at(t, [1.0, 2.0, 3.0], model)


def test_stage_loss_trains_every_stage_and_packing_gives_the_same_loss():
    model = ppf(levels=3)
    x, y = inputs(batch=8)
    losses = []
    for packed in (False, True):
        model.zero_grad()
        g = torch.Generator().manual_seed(3)
        t = ppflow.sample_stage_times(x.shape[0], model, [0.5, 0.25, 0.25], g)
        noise = torch.randn(x.shape, generator=g)
        z = (1 - t.view(-1, 1, 1, 1)) * x + t.view(-1, 1, 1, 1) * noise
        out = ppflow.forward_packed(model, z, t, y) if packed else model(z, t, y)
        loss = (out[:, :4] - (noise - x)).pow(2).mean()
        loss.backward()
        losses.append(loss.item())
        for s in range(2):  # each coarse stage's own modules get gradients from its share of the batch
            assert model.stage_patchify[s].embed.proj.weight.grad.abs().sum() > 0
            assert model.stage_finals[s].linear.weight.grad.abs().sum() > 0
        assert model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_stage_times_never_round_into_the_next_stage(monkeypatch):
    sched = ppf().schedule
    largest_u = 1 - 2 ** -24  # the largest float32 below 1, which torch.rand may return
    monkeypatch.setattr(torch, "rand", lambda n, **kw: torch.full((n,), largest_u))
    t = ppflow.sample_stage_times(4, sched, [0.5, 0.25, 0.25])
    assert sched.stage_of(t).tolist() == [0, 0, 1, 2]


def test_evaluation_fractions_of_a_sampler_grid():
    sched = ppf().schedule
    midpoints = (torch.arange(1000) + 0.5) / 1000
    assert sched.evaluation_fractions(midpoints) == pytest.approx(sched.fractions())
    euler = torch.linspace(1, 0, 251)[:-1]  # 250 evaluations from t = 1 down, t = 0 never evaluated
    fractions = sched.evaluation_fractions(euler)
    assert fractions[0] == pytest.approx(126 / 250)  # t = 1, 0.996, ..., 0.5 inclusive
    assert sum(fractions) == pytest.approx(1.0)
