"""PPFlow inside the engine: stage-proportional training draws, resume, per-stage CFG, convert -> sample / fine-tune."""

import copy

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mpdit_bench import checkpoint
from mpdit_bench.engine import flow, sampling, train as train_mod
from mpdit_bench import ppflow
from mpdit_bench.cli import app
from mpdit_bench.config import ConfigError
from mpdit_bench.models import build_model, model_config
from mpdit_bench.engine.train import load_run_config, train, validate_run_config

torch.set_num_threads(1)
SCHED3 = {"time_patch_sizes": ["8x8", "4x8", "4x4"], "time_boundaries": [0.5, 0.25]}
ISO = {"model": "SiT-S/2",
       "model_overrides": {"hidden_size": 32, "num_heads": 2, "depths": [2], "patch_sizes": [4]},
       "data": {"name": "fashion-mnist", "limit": 16},
       "train": {"global_batch": 8, "lr": 1.0e-3, "steps": 4, "seed": 3, "ema_decay": 0.9, "ema_warmup": True, "device": "cpu",
                 "threads": 1, "log_every": 1, "ckpt_every": 2, "progress": False}}


def run_cfg(schedule=SCHED3, **train_overrides):
    cfg = copy.deepcopy(ISO)
    cfg["model_overrides"].update(schedule or {})
    cfg["train"].update(train_overrides)
    return cfg


def tiny_model(schedule=SCHED3):
    mcfg = model_config("SiT-S/2", hidden_size=32, num_heads=2, depths=[2], patch_sizes=[4], in_channels=1,
                        num_classes=10, input_size=32, **(schedule or {}))
    torch.manual_seed(0)
    model = build_model(mcfg).eval()
    with torch.no_grad():  # zero-initialised output layers would make every velocity 0
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return model


def _state(run_dir):
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")


# ---- training --------------------------------------------------------------------------------------------
def test_stage_draw_keeps_the_engines_sharding():
    model = tiny_model()
    times = train_mod.stage_times(model.cfg, [0.5, 0.25, 0.25])
    one = flow.draw((1, 32, 32), 16, 0, 1, seed=5, step=7, times=times)
    parts = [flow.draw((1, 32, 32), 16, r, 2, seed=5, step=7, times=times) for r in range(2)]
    for r, part in enumerate(parts):  # rank r's rows of the one global draw
        assert torch.equal(one.t[r::2], part.t) and torch.equal(one.noise[r::2], part.noise)
        assert torch.equal(one.drop[r::2], part.drop)
    stages = model.schedule.stage_of(one.t)
    assert torch.bincount(stages, minlength=3).tolist() == [8, 4, 4]
    assert torch.equal(one.noise, flow.draw((1, 32, 32), 16, 0, 1, seed=5, step=7).noise)  # noise drawn first
    assert not torch.equal(one.t, flow.draw((1, 32, 32), 16, 0, 1, seed=5, step=8, times=times).t)
    assert train_mod.stage_times(tiny_model(None).cfg, None) is None  # no schedule: logit-normal as before


def test_training_draws_t_per_stage_in_the_configured_proportions(tmp_path, monkeypatch):
    seen, real = [], flow.flow_loss

    def spy(model, z, y, draws, null_class):
        seen.append(draws.t.clone())
        return real(model, z, y, draws, null_class)

    monkeypatch.setattr(flow, "flow_loss", spy)
    summary = train(run_cfg(steps=2, stage_proportions=[0.5, 0.25, 0.25]), tmp_path / "run")
    assert summary["final_step"] == 2 and np.isfinite(summary["final_loss"])
    sched = tiny_model().schedule
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])
    for t in seen:
        assert torch.bincount(sched.stage_of(t), minlength=3).tolist() == [4, 2, 2]
        assert ((t >= 0) & (t < 1)).all()
    state = _state(tmp_path / "run")
    assert state["model_config"]["time_patch_sizes"] == SCHED3["time_patch_sizes"]
    assert any(k.startswith("stage_finals.") for k in state["model"])


def test_resume_is_bitwise_for_a_schedule_model(tmp_path):
    train(run_cfg(steps=4), tmp_path / "full")
    train(run_cfg(steps=3), tmp_path / "split")  # 2 batches per epoch: stops mid-epoch
    train(run_cfg(steps=4), tmp_path / "split")
    a, b = _state(tmp_path / "full"), _state(tmp_path / "split")
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_packed_training_matches_unpacked(tmp_path, monkeypatch):
    calls, real = [], ppflow.forward_packed
    monkeypatch.setattr(ppflow, "forward_packed", lambda *a, **k: calls.append(1) or real(*a, **k))
    train(run_cfg(steps=2), tmp_path / "plain")
    assert not calls
    train(run_cfg(steps=2, packing=True), tmp_path / "packed")
    assert len(calls) == 2
    a, b = _state(tmp_path / "plain")["model"], _state(tmp_path / "packed")["model"]
    for key in a:  # equal up to float rounding (another summation order)
        assert torch.allclose(a[key], b[key], atol=1e-5), key


@pytest.mark.parametrize("train_key,value,schedule,allowed", [
    ("stage_proportions", [0.5, 0.5], SCHED3, "3 numbers, one per stage"),
    ("stage_proportions", [0.5, 0.5], None, "no patch schedule"),
    ("stage_proportions", [0.5, "a", 0.1], SCHED3, "numbers >= 0"),
    ("packing", True, None, "one-level model with a patch schedule"),
    ("init_from", 3, SCHED3, "null or a checkpoint"),
])
def test_bad_ppflow_train_keys_are_refused_before_compute(tmp_path, train_key, value, schedule, allowed):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(run_cfg(schedule, **{train_key: value})))
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert f"train.{train_key}" in str(err.value) and allowed in str(err.value) and str(path) in str(err.value)


def test_run_config_checks_the_per_stage_cfg_scale():
    cfg = run_cfg()
    cfg["sample"] = {"cfg_scale": [1.0, 3.0]}
    with pytest.raises(ConfigError, match=r"sample\.cfg_scale.*3 numbers"):
        validate_run_config(cfg)
    cfg["sample"] = {"cfg_scale": [1.0, 2.0, 3.0]}
    assert validate_run_config(cfg)["sample"]["cfg_scale"] == [1.0, 2.0, 3.0]


# ---- sampling ------------------------------------------------------------------------------------------
OPTS = sampling.check_options({"steps": 4, "batch_size": 4, "seed": 11})


def _sample(model, **opts):
    labels = torch.tensor([0, 3, 7])
    return sampling.sample_indices(model, model.cfg, range(3), labels, {**OPTS, **opts}, torch.device("cpu"))


@pytest.fixture(scope="module")
def ppf2():
    return tiny_model({"time_patch_sizes": ["8x8", "4x4"], "time_boundaries": [0.5]})


@pytest.mark.parametrize("name", sampling.SAMPLERS)
def test_per_stage_cfg_with_every_sampler(ppf2, name):
    plain = _sample(ppf2, sampler=name)
    assert plain.shape == (3, 1, 32, 32) and torch.isfinite(plain).all()
    assert torch.equal(_sample(ppf2, sampler=name, cfg_scale=[1.0, 1.0]), plain)  # = the conditional model
    guided = _sample(ppf2, sampler=name, cfg_scale=[1.0, 3.0])
    assert torch.isfinite(guided).all() and not torch.allclose(guided, plain)


def test_scale_is_looked_up_from_t_and_the_boundary_belongs_to_the_coarse_stage(ppf2):
    # Euler over 2 steps evaluates at t = 1 and t = 0.5 only: both in the coarse stage [0.5, 1]
    two = dict(sampler="euler", steps=2)
    assert torch.equal(_sample(ppf2, cfg_scale=[2.0, 5.0], **two), _sample(ppf2, cfg_scale=[2.0, 1.0], **two))
    assert not torch.allclose(_sample(ppf2, cfg_scale=[1.0, 1.0], **two), _sample(ppf2, cfg_scale=[2.0, 1.0], **two))
    # over 4 steps t = 0.25 is evaluated too: the fine stage's scale now matters
    four = dict(sampler="euler", steps=4)
    assert not torch.allclose(_sample(ppf2, cfg_scale=[2.0, 5.0], **four), _sample(ppf2, cfg_scale=[2.0, 1.0], **four))
    # the model's own stage at t = 0.5 is the coarse one as well
    x, y, t = torch.randn(2, 1, 32, 32), torch.tensor([1, 2]), torch.full((2,), 0.5)
    with torch.no_grad():
        assert torch.equal(ppf2(x, t, y), ppf2(x, t, y, stage=0))
        assert not torch.allclose(ppf2(x, t, y), ppf2(x, t, y, stage=1))


def test_per_stage_cfg_of_the_wrong_length_is_refused(ppf2):
    with pytest.raises(ConfigError, match=r"cfg_scale.*2 numbers"):
        _sample(ppf2, cfg_scale=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="no patch schedule"):
        _sample(tiny_model(None), cfg_scale=[1.0, 2.0])
    with pytest.raises(ConfigError, match="cfg_scale"):
        sampling.check_options({"cfg_scale": [1.0, -2.0]})


# ---- convert -> sample -> fine-tune ----------------------------------------------------------------------
def test_convert_a_trained_isotropic_run_then_sample_and_fine_tune(tmp_path):
    runner = CliRunner()
    train(run_cfg(None, steps=2), tmp_path / "iso")
    src = tmp_path / "iso" / "checkpoints" / "last.pt"
    result = runner.invoke(app, ["convert", str(src), "--to", "ppflow", "--levels", "2", "--out",
                                 str(tmp_path / "ppf.pt")])
    assert result.exit_code == 0, result.output
    conv = checkpoint.load(tmp_path / "ppf.pt")  # the engine's loader (weights_only=True, format, keys)
    assert conv["step"] == 0 and conv["model_config"]["time_patch_sizes"] == ["8x8", "4x4"]
    iso = checkpoint.load(src)
    assert all(torch.equal(conv["ema"][k], v) for k, v in iso["ema"].items())  # base keys copied as they are

    out = tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", str(tmp_path / "ppf.pt"), "--num", "3", "--steps", "3",
                                 "--cfg-scale", "1.0,3.0", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with np.load(out) as f:
        assert f["arr_0"].shape == (3, 32, 32, 3) and f["arr_0"].dtype == np.uint8
    with pytest.raises(ConfigError, match="cfg_scale"):  # checked before the model is built
        sampling.sample_checkpoint(tmp_path / "ppf.pt", 3, tmp_path / "bad.npz", cfg_scale=[1.0, 2.0, 3.0],
                                   progress=False, device="cpu")

    schedule = {"time_patch_sizes": ["8x8", "4x4"], "time_boundaries": [0.5]}
    tuned = train(run_cfg(schedule, steps=2, init_from=str(tmp_path / "ppf.pt")), tmp_path / "tune")
    assert tuned["final_step"] == 2 and np.isfinite(tuned["final_loss"])
    state = _state(tmp_path / "tune")
    fresh = build_model(model_config("SiT-S/2", **{**ISO["model_overrides"], **schedule}, in_channels=1,
                                     num_classes=10, input_size=32)).state_dict()
    key = next(k for k in fresh if k.endswith("qkv.weight"))
    assert not torch.allclose(fresh[key], conv["model"][key], atol=1e-2)  # init_from is what made the difference
    for part in ("model", "ema"):  # two AdamW steps of lr 1e-3 move each weight by ~2e-3 at most
        for k, v in state[part].items():
            assert torch.allclose(v, conv[part][k], atol=3e-3), (part, k)
    with pytest.raises(ConfigError, match=r"train\.init_from.*time_patch_sizes"):
        train(run_cfg(None, steps=1, init_from=str(tmp_path / "ppf.pt")), tmp_path / "wrong")


# ---- two ranks -------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("packing", [False, True])
def test_two_gloo_ranks_match_one_process_for_a_schedule_model(tmp_path, packing):
    from test_distributed import _torchrun

    # counts 6, 1, 1 over the global batch of 8: rank 0 sees no stage-2 sample, rank 1 no stage-1 sample
    cfg = run_cfg(steps=2, ckpt_every=2, stage_proportions=[0.75, 0.125, 0.125], packing=packing)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    train(cfg, tmp_path / "one")
    _torchrun("train", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "two"))
    one, two = _state(tmp_path / "one"), _state(tmp_path / "two")
    assert two["world_size"] == 2
    for key, a in one["model"].items():
        assert torch.allclose(a, two["model"][key], rtol=1e-5, atol=1e-6), key
