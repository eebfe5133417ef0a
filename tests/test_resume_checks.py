"""A resume continues the run it finds, or refuses: changed settings are named with both values, and weights
of another architecture give a short error, not torch's list of mismatched tensors."""

import pytest
import torch

from _data import needs_fashion_mnist
from _tiny import tiny_run
from mpdit_bench.config import ConfigError
from mpdit_bench.engine.run_config import ResumeError, resume_changes, validate_run_config
from mpdit_bench.engine.train import load_weights, train

pytestmark = needs_fashion_mnist


def test_a_resume_may_change_the_length_and_logging_only(tmp_path):
    train(tiny_run(steps=2), tmp_path)
    longer = tiny_run(steps=4, log_every=2, progress=False, ckpt_every=4, time_limit_s=600)
    assert train(longer, tmp_path)["final_step"] == 4


def test_a_resume_with_changed_hyperparameters_names_each_key_with_both_values(tmp_path):
    train(tiny_run(steps=2), tmp_path)
    with pytest.raises(ResumeError) as err:
        train(tiny_run(steps=4, lr=5e-3, seed=9), tmp_path)
    message = str(err.value)
    assert "last.pt" in message and "train.lr: 0.001 in the checkpoint, 0.005 now" in message
    assert "train.seed: 3 in the checkpoint, 9 now" in message and "train.steps:" not in message
    assert isinstance(err.value, ConfigError)  # the CLI reports it as bad input (exit 2), not a traceback
    # the refused resume changed nothing: the recorded config is still the one trained
    assert "lr: 0.001" in (tmp_path / "config.yaml").read_text()


def test_a_changed_architecture_is_refused_before_any_weight_is_loaded(tmp_path):
    train(tiny_run(steps=2), tmp_path)
    wider = tiny_run(steps=4)
    wider["model_overrides"]["hidden_size"] = 48
    with pytest.raises(ResumeError, match=r"model_config\.hidden_size: 32 in the checkpoint, 48 now"):
        train(wider, tmp_path)


def test_resume_changes_ignore_keys_newer_than_the_checkpoint_at_their_default():
    run = validate_run_config(tiny_run())
    older = {**run, "train": {k: v for k, v in run["train"].items() if k != "tensorboard"}}
    assert resume_changes(older, None, run, {}) == []
    assert resume_changes(older, None, {**run, "train": {**run["train"], "packing": True}}, {}) == [
        ("train.packing", False, True)]


def test_weights_of_another_architecture_are_refused_in_a_few_lines(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    other = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Linear(6, 2)).state_dict()
    with pytest.raises(ConfigError) as err:
        load_weights(model, other, tmp_path / "last.pt")
    message = str(err.value)
    assert "of another shape" in message and "0.weight (6, 4) vs (8, 4)" in message
    assert len(message.splitlines()) == 1


def test_kept_steps_are_checkpointed_and_may_be_added_on_resume(tmp_path):
    train(tiny_run(steps=2, keep_steps=[1]), tmp_path)
    train(tiny_run(steps=4, keep_steps=[1, 3]), tmp_path)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert kept == ["step_0000001.pt", "step_0000003.pt"]
    assert torch.load(tmp_path / "checkpoints" / "step_0000003.pt", weights_only=True)["step"] == 3
