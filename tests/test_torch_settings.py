"""torch's process-wide settings: applied for a block and restored, by the helper and by the phases that use it.

The in-worker phases of a sweep against their commands: tests/test_sweep_pipeline.py.
"""

import pytest
import torch
import torch.nn.functional as F

from _tiny import tiny_run
from mpdit_bench.engine import sampling
from mpdit_bench.engine.torch_settings import TorchSettings, applied, current, torch_settings
from mpdit_bench.engine.train import Trainer, train
from mpdit_bench.models import build_model, model_config
from mpdit_bench.models.blocks import Attention, explicit_attention
from settings_cli import install_recorders, read_records


def every_setting_changed(s: TorchSettings) -> TorchSettings:
    return TorchSettings(threads=1 if s.threads != 1 else 2, matmul_tf32=not s.matmul_tf32,
                         cudnn_tf32=not s.cudnn_tf32, cudnn_benchmark=not s.cudnn_benchmark,
                         cudnn_deterministic=not s.cudnn_deterministic)


def as_record(s: TorchSettings) -> set[tuple]:
    return {tuple(sorted(s.as_dict().items()))}


def test_applied_sets_every_setting_and_restores_them():
    before = current()
    target = every_setting_changed(before)
    with applied(target) as inside:
        assert current() == inside == target
    assert current() == before


def test_applied_restores_after_an_exception():
    before = current()
    with pytest.raises(RuntimeError, match="inside the block"):
        with applied(every_setting_changed(before)):
            raise RuntimeError("inside the block")
    assert current() == before


def test_nested_blocks_restore_their_own_settings_and_leave_the_others():
    before = current()
    with torch_settings(matmul_tf32=not before.matmul_tf32) as outer:
        assert outer.threads == before.threads and outer.cudnn_benchmark == before.cudnn_benchmark
        with torch_settings(threads=1 if before.threads != 1 else 2, cudnn_benchmark=True) as inner:
            assert inner.matmul_tf32 == outer.matmul_tf32 != before.matmul_tf32
            assert inner.threads != before.threads and inner.cudnn_benchmark
        assert current() == outer
    assert current() == before


def test_an_unknown_setting_is_refused_with_the_allowed_names():
    with pytest.raises(TypeError, match="'tf32'; allowed: threads, matmul_tf32"):
        torch_settings(tf32=True)


# ---- the phases ----------------------------------------------------------------------------------------------
def test_training_and_sampling_apply_their_settings_and_leave_the_process_as_it_was(tmp_path, monkeypatch):
    before = current()
    threads = 1 if before.threads != 1 else 2  # differs from the process's, so a leak would show
    log = tmp_path / "settings.jsonl"
    install_recorders(log, monkeypatch.setattr)
    train(tiny_run(steps=2, threads=threads, tf32=not before.matmul_tf32), tmp_path / "run")
    assert current() == before
    sampling.sample_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", 3, tmp_path / "s.npz", steps=2,
                               progress=False)
    assert current() == before
    seen = read_records(log)
    assert seen["train"] == as_record(TorchSettings(**{**before.as_dict(), "threads": threads,
                                                       "matmul_tf32": not before.matmul_tf32,
                                                       "cudnn_tf32": not before.matmul_tf32}))
    assert seen["sample"] == as_record(TorchSettings(**{**before.as_dict(), "matmul_tf32": True,
                                                        "cudnn_tf32": True}))


def test_a_failed_training_leaves_the_process_as_it_was(tmp_path, monkeypatch):
    before = current()

    def fail(self, x, y):
        raise RuntimeError("step failed")

    monkeypatch.setattr(Trainer, "step", fail)
    with pytest.raises(RuntimeError, match="step failed"):
        train(tiny_run(steps=2, threads=1 if before.threads != 1 else 2, tf32=not before.matmul_tf32),
              tmp_path / "run")
    assert current() == before


# ---- the attention path --------------------------------------------------------------------------------------
def test_explicit_attention_switches_one_model_and_restores_it(monkeypatch):
    fused_calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *args, **kwargs: fused_calls.append(1) or fused(*args, **kwargs))
    cfg = model_config("DiT-S/2", hidden_size=32, num_heads=2, depths=[2])
    counted, other = build_model(cfg).eval(), build_model(cfg).eval()
    layers = sum(isinstance(m, Attention) for m in counted.modules())
    inputs = (torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size), torch.full((1,), 0.5),
              torch.zeros(1, dtype=torch.long))

    def fused_calls_of(model) -> int:
        start = len(fused_calls)
        with torch.no_grad():
            model(*inputs)
        return len(fused_calls) - start

    with pytest.raises(RuntimeError, match="inside the block"):
        with explicit_attention(counted):
            assert fused_calls_of(counted) == 0
            assert fused_calls_of(other) == layers > 0  # another model in the process keeps the fused kernel
            raise RuntimeError("inside the block")
    assert fused_calls_of(counted) == layers
