"""Isotropic (or MPDiT) -> PPFlow initialisation: exact fine stage, average patchify, copy unpatchify, CLI."""

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import mpdit_bench.models  # noqa: F401
from _random_weights import randomised
from mpdit_bench.cli import app
from mpdit_bench.components.upsample import pixel_shuffle_tokens
from mpdit_bench.config import ConfigError, ModelConfig
from mpdit_bench.ppflow.convert import convert_isotropic_to_ppflow, ppflow_config
from mpdit_bench.models import build_model, model_config
from mpdit_bench.components.embeddings import unpatchify

torch.set_num_threads(2)
SMALL = dict(hidden_size=64, num_heads=4, num_classes=10, input_size=16)


def source(name="SiT-S/2", **kw):
    return randomised(build_model(model_config(name, **SMALL, **kw)))


def converted(src, levels):
    cfg = ppflow_config(src.cfg, levels)
    model = build_model(cfg)
    model.load_state_dict(convert_isotropic_to_ppflow(src, cfg))  # strict: every key filled, shapes right
    return model.eval()


def inputs(batch=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 4, 16, 16, generator=g), torch.tensor([0, 5, 10])[:batch]


@pytest.mark.parametrize("levels", [2, 3])
def test_converted_fine_stage_reproduces_the_isotropic_model_exactly(levels):
    src = source(depths=[2])
    model = converted(src, levels)
    assert torch.count_nonzero(model.level_embed.weight) == 0
    x, y = inputs()
    t = torch.tensor([0.0, 0.1, 0.2])
    with torch.no_grad():
        assert torch.equal(model(x, t, y), src(x, t, y))
        for s in range(model.schedule.num_stages):  # every stage runs and has the source's output shape
            assert model(x, t, y, stage=s).shape == src(x, t, y).shape


def test_converted_mpdit_fine_stage_is_exact_too():
    src = source("MPDiT-B", depths=[1, 1])
    model = converted(src, 2)
    assert model.schedule.shapes == ((8, 8), (4, 4))
    x, y = inputs()
    t = torch.full((3,), 0.3)
    with torch.no_grad():
        assert torch.equal(model(x, t, y), src(x, t, y))
        assert model(x, torch.full((3,), 0.7), y).shape == (3, 4, 16, 16)


@pytest.mark.parametrize("levels", [2, 3])
def test_patchify_average_embeds_the_block_averaged_input(levels):
    src = source(depths=[1])
    model = converted(src, levels)
    x, _ = inputs()
    with torch.no_grad():
        for s in range(model.schedule.num_stages - 1):
            merge = model.schedule.merge(s)
            torch.testing.assert_close(model.stage_patchify[s](x), src.patch_embed(F.avg_pool2d(x, merge)),
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("levels", [2, 3])
def test_unpatchify_copy_repeats_the_source_prediction(levels):
    src = source(depths=[1])
    model = converted(src, levels)
    c = src.cfg.out_channels
    with torch.no_grad():
        for s in range(model.schedule.num_stages - 1):
            gh, gw = model.stage_grid(s)
            fh, fw = model.schedule.merge(s)
            img, mod = torch.randn(2, gh * gw, 64), torch.randn(2, 2, 64)
            coarse = unpatchify(src.final(img, mod[:, 0], mod[:, 1]), 2, c, gh, gw)  # (B, C, H/fh, W/fw)
            expected = coarse.repeat_interleave(fh, 2).repeat_interleave(fw, 3)  # nearest neighbour
            torch.testing.assert_close(model.head(img, mod, s), expected)


def test_widened_upsample_repeats_the_source_expansion():
    src = source("MPDiT-B", depths=[1, 1])
    model = converted(src, 2)
    v = torch.randn(1, 1, 64)
    with torch.no_grad():
        small = pixel_shuffle_tokens(src.upsamples[0].expand.linear(v), 1, 1, 2).view(2, 2, 64)
        big = model.stage_upsamples[0].expand(v, 1, 1).view(4, 4, 64)
    assert torch.equal(big, small.repeat(2, 2, 1))


def test_mismatched_source_is_refused_with_the_key():
    src = source(depths=[2])
    wider = ppflow_config(src.cfg.replace(hidden_size=128), 2)
    with pytest.raises(ConfigError) as err:
        convert_isotropic_to_ppflow(src.state_dict(), wider)
    assert "shape" in str(err.value)
    with pytest.raises(ConfigError):
        convert_isotropic_to_ppflow(src, wider)  # a module with another config


def test_cli_converts_a_checkpoint_file(tmp_path):
    src = source(depths=[2])
    ckpt = tmp_path / "last.pt"
    torch.save({"format": "mpdit-bench-checkpoint-v1", "step": 12, "model": src.state_dict(),
                "ema": src.state_dict(), "model_config": src.cfg.to_dict(), "optimizer": {}}, ckpt)
    out = tmp_path / "ppf.pt"
    result = CliRunner().invoke(app, ["convert", str(ckpt), "--to", "ppflow", "--out", str(out), "--levels", "3"])
    assert result.exit_code == 0, result.output
    new = torch.load(out, weights_only=True)
    assert "optimizer" not in new and new["converted_from"]["step"] == 12
    cfg = ModelConfig.from_dict(new["model_config"])
    assert cfg.time_patch_sizes == ("4x4", "2x4", "2x2")
    model = build_model(cfg)
    model.load_state_dict(new["ema"])
    x, y = inputs()
    t = torch.full((3,), 0.1)
    with torch.no_grad():
        assert torch.equal(model.eval()(x, t, y), src(x, t, y))


def test_cli_needs_a_source_config(tmp_path):
    ckpt = tmp_path / "bare.pt"
    torch.save({"model": source(depths=[1]).state_dict()}, ckpt)
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(ckpt), "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "model_config" in result.output and not (tmp_path / "x.pt").exists()
    result = runner.invoke(app, ["convert", str(ckpt), "--out", str(tmp_path / "x.pt"), "--levels", "4"])
    assert result.exit_code == 2 and "levels" in result.output
