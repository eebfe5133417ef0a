import pytest
import torch

from mpdit_bench import checkpoint
from mpdit_bench.checkpoint import CheckpointError


def _ckpt(value=1.0):
    return {"format": checkpoint.FORMAT, "step": 3, "model": {"w": torch.full((4,), value)},
            "model_config": {"hidden_size": 32}, "rng": [checkpoint.rng_state(torch.device("cpu"))]}


def test_round_trip_with_weights_only(tmp_path):
    path = checkpoint.save_atomic(_ckpt(), tmp_path / "c" / "last.pt")
    state = checkpoint.load(path)
    assert state["step"] == 3 and torch.equal(state["model"]["w"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_rng_state_round_trip():
    state = checkpoint.rng_state(torch.device("cpu"))
    a = torch.rand(3)
    checkpoint.set_rng_state(state, torch.device("cpu"))
    assert torch.equal(a, torch.rand(3))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_refused_with_clear_error(tmp_path, damage):
    path = checkpoint.save_atomic(_ckpt(), tmp_path / "last.pt")
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"\x00not a checkpoint" * 50, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as err:
        checkpoint.load(path)
    assert str(path) in str(err.value)


def test_foreign_or_incomplete_files_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="'format'"):
        checkpoint.load(tmp_path / "foreign.pt")
    incomplete = _ckpt()
    del incomplete["model"]
    checkpoint.save_atomic(incomplete, tmp_path / "inc.pt")
    with pytest.raises(CheckpointError, match="model"):
        checkpoint.load(tmp_path / "inc.pt")
    with pytest.raises(CheckpointError, match="no such"):
        checkpoint.load(tmp_path / "missing.pt")


class Evil:  # an arbitrary class: weights_only loading must refuse to build it
    pass


def test_pickled_objects_are_not_loaded(tmp_path):
    state = _ckpt()
    state["extra"] = Evil()
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "evil.pt")


def test_crash_during_save_keeps_previous_file(tmp_path, monkeypatch):
    path = checkpoint.save_atomic(_ckpt(1.0), tmp_path / "last.pt")

    def dying_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic(_ckpt(2.0), path)
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
