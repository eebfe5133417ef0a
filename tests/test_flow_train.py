import csv
import math

import pytest
import torch
import yaml

from _tiny import tiny_run
from mpdit_bench import checkpoint
from mpdit_bench.engine import flow
from mpdit_bench.config import ConfigError
from mpdit_bench.models import create_model
from mpdit_bench.engine.train import (TrainingDiverged, ema_decay_at, load_run_config, resolve_model_config, train,
                               validate_run_config)

torch.set_num_threads(1)


def test_interpolant_endpoints_and_target():
    z, n = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    assert torch.equal(flow.interpolate(z, n, torch.zeros(3)), z)  # t = 0 is data
    assert torch.equal(flow.interpolate(z, n, torch.ones(3)), n)  # t = 1 is noise
    half = flow.interpolate(z, n, torch.full((3,), 0.5))
    assert torch.allclose(half, 0.5 * (z + n))

    class Oracle(torch.nn.Module):  # predicts n - z exactly, plus a junk learned-sigma channel
        def forward(self, x, t, y):
            return torch.cat([n - z, torch.full_like(z, 99.0)], dim=1)

    draws = flow.FlowDraws(n, torch.rand(3), torch.zeros(3, dtype=torch.bool))
    assert flow.flow_loss(Oracle(), z, torch.zeros(3, dtype=torch.long), draws, 10).item() == 0.0


def test_draws_shard_like_distributed_sampler():
    one = flow.draw((1, 4, 4), 8, 0, 1, seed=5, step=7)
    parts = [flow.draw((1, 4, 4), 8, r, 2, seed=5, step=7) for r in range(2)]
    assert torch.equal(one.noise[0::2], parts[0].noise) and torch.equal(one.noise[1::2], parts[1].noise)
    assert torch.equal(one.t[1::2], parts[1].t)
    assert not torch.equal(one.noise, flow.draw((1, 4, 4), 8, 0, 1, seed=5, step=8).noise)


def test_logit_normal_t_and_label_drop_rate():
    d = flow.draw((1,), 20000, 0, 1, seed=0, step=0, label_drop=0.1)
    assert 0 < d.t.min() and d.t.max() < 1
    assert abs(d.t.median().item() - 0.5) < 0.02  # sigmoid(N(0,1)) is symmetric around 0.5
    assert abs(d.drop.float().mean().item() - 0.1) < 0.01
    y = flow.drop_labels(torch.arange(6), torch.tensor([1, 0, 1, 0, 0, 0], dtype=torch.bool), 10)
    assert y.tolist() == [10, 1, 10, 3, 4, 5]


def test_loss_falls_when_overfitting_a_handful_of_images():
    from mpdit_bench.data.fashion_mnist import FashionMNIST

    torch.manual_seed(0)
    data = FashionMNIST("train", limit=8)
    x = torch.stack([data[i][0] for i in range(8)])
    y = torch.tensor([data[i][1] for i in range(8)])
    model = create_model("MPDiT-B", hidden_size=32, num_heads=2, depths=[1, 1], patch_sizes=[8, 4],
                         class_tokens=2, in_channels=1, num_classes=10, input_size=32)
    fixed = flow.draw((1, 32, 32), 8, 0, 1, seed=1, step=0, label_drop=0.0)

    def held_loss():
        with torch.no_grad():
            return flow.flow_loss(model, x, y, fixed, 10).item()

    before = held_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(80):
        loss = flow.flow_loss(model, x, y, flow.draw((1, 32, 32), 8, 0, 1, seed=2, step=step), 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_loss()
    assert after < 0.6 * before, (before, after)


def _state(run_dir):
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")


def _assert_bitwise(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bitwise_identical(tmp_path):
    full = train(tiny_run(steps=6), tmp_path / "full")
    train(tiny_run(steps=3), tmp_path / "split")  # stops mid-epoch (2 batches per epoch)
    resumed = train(tiny_run(steps=6), tmp_path / "split")
    assert full["final_step"] == resumed["final_step"] == 6
    a, b = _state(tmp_path / "full"), _state(tmp_path / "split")
    _assert_bitwise(a["model"], b["model"])
    _assert_bitwise(a["ema"], b["ema"])
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        _assert_bitwise(pa, pb)
    assert (a["epoch"], a["batch_in_epoch"]) == (b["epoch"], b["batch_in_epoch"]) == (2, 2)  # stopped after the last batch of epoch 2
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    full_rows = list(csv.DictReader(open(tmp_path / "full" / "metrics.csv")))
    assert [r["loss"] for r in rows] == [r["loss"] for r in full_rows]
    with pytest.raises(ConfigError, match="train.global_batch"):
        train(tiny_run(steps=8, global_batch=4), tmp_path / "split")


def test_training_changes_weights_and_writes_run_dir(tmp_path):
    seen = []
    summary = train(tiny_run(steps=2, val_every=2, val_size=8), tmp_path / "run",
                    on_validation=lambda step, loss: seen.append((step, loss)))
    assert summary["final_step"] == 2 and summary["images_seen"] == 16 and summary["world_size"] == 1
    assert math.isfinite(summary["last_val_loss"]) and seen == [(2, summary["last_val_loss"])]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["val_loss"]) == summary["last_val_loss"] and rows[0]["val_loss"] == ""
    state = _state(tmp_path / "run")
    init = create_model("MPDiT-B", **{**tiny_run()["model_overrides"], "in_channels": 1, "num_classes": 10,
                                      "input_size": 32})
    assert not torch.equal(state["model"]["final.linear.weight"], init.state_dict()["final.linear.weight"])
    assert state["model_config"]["in_channels"] == 1 and state["model_config"]["num_classes"] == 10
    assert len(state["rng"]) == 1 and state["rng"][0]["cpu"].dtype == torch.uint8
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["steps"] == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real, calls = flow.flow_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(flow, "flow_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 4.*last\.pt \(step 2\)"):
        train(tiny_run(steps=6), tmp_path / "run")
    state = _state(tmp_path / "run")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_geometry_comes_from_the_data():
    cfg = validate_run_config(tiny_run())
    info = {"name": "fashion-mnist", "channels": 1, "size": 32, "num_classes": 10}
    mcfg = resolve_model_config(cfg, info)
    assert (mcfg.in_channels, mcfg.num_classes, mcfg.input_size) == (1, 10, 32)
    cfg["model_overrides"]["in_channels"] = 4
    with pytest.raises(ConfigError, match="model_overrides.in_channels"):
        resolve_model_config(cfg, info)


@pytest.mark.parametrize("section,key,value,allowed", [
    ("train", "lrr", 1e-4, "one of the keys"),
    ("train", "global_batch", 0, "an integer >= 1"),
    ("train", "precision", "fp8", "bf16"),
    ("data", "name", "imagenet", "fashion-mnist, latents"),
    ("model_overrides", "num_heads", 5, "divisor of hidden_size"),
    ("sample", "sampler", "ddim", "euler, heun, heun2, sde"),
])
def test_bad_run_config_names_file_and_key(tmp_path, section, key, value, allowed):
    cfg = tiny_run()
    cfg.setdefault(section, {})[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert str(path) in str(err.value) and key in str(err.value) and allowed in str(err.value)


def test_set_overrides_and_unknown_section(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_run()))
    cfg = load_run_config(path, ["train.lr=2e-4", "model_overrides.depths=2,1"])
    assert cfg["train"]["lr"] == 2e-4 and cfg["model_overrides"]["depths"] == [2, 1]
    with pytest.raises(ConfigError, match="section"):
        load_run_config(path, ["optim.lr=1"])
    with pytest.raises(ConfigError, match="data.path"):
        validate_run_config({**tiny_run(), "data": {"name": "latents"}})


class Pruned(Exception):
    pass


def test_on_validation_can_stop_the_run(tmp_path):
    def prune(step, loss):
        raise Pruned(step)

    with pytest.raises(Pruned, match="1"):
        train(tiny_run(steps=4, val_every=1, val_size=4), tmp_path / "run", on_validation=prune)


def test_activation_checkpointing_gives_the_same_training(tmp_path):
    train(tiny_run(steps=2), tmp_path / "plain")
    train(tiny_run(steps=2, activation_checkpointing=True), tmp_path / "ckpt")
    a, b = _state(tmp_path / "plain")["model"], _state(tmp_path / "ckpt")["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_ema_warmup_ramps_to_the_set_decay():
    assert ema_decay_at(0, 0.9999, warmup=False) == 0.9999
    ramp = [ema_decay_at(s, 0.9999, warmup=True) for s in (0, 10, 160, 10**6)]
    assert ramp[0] == 0.1 and ramp[1] == 11 / 20 and ramp[2] == 161 / 170 and ramp[3] == 0.9999
    assert ramp == sorted(ramp)


def test_short_run_ema_leaves_the_init_only_with_warmup(tmp_path):
    def ema_moved(**over):
        train(tiny_run(steps=4, ema_decay=0.9999, **over), tmp_path / str(over))
        init = create_model("MPDiT-B", **{**tiny_run()["model_overrides"], "in_channels": 1, "num_classes": 10,
                                          "input_size": 32}).state_dict()["final.linear.weight"]
        state = _state(tmp_path / str(over))
        trained = (state["model"]["final.linear.weight"] - init).abs().sum()
        return float((state["ema"]["final.linear.weight"] - init).abs().sum() / trained)

    with pytest.warns(UserWarning, match="train.ema_warmup"):
        frozen = ema_moved(ema_warmup=False)
    assert frozen < 0.01 and ema_moved(ema_warmup=True) > 0.3
