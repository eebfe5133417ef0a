"""What every source format shares: the safe read, the refusal, the key and shape check against the suite's
model, and the two weight rewrites that move a "t = 0 noise, predicts data - noise" network (SiT, PPFlow)
into the suite's "t = 0 data, predicts noise - data" convention without changing the function."""

from __future__ import annotations

import argparse
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from mpdit_bench.config import ModelConfig
from mpdit_bench.checkpoint import CheckpointError, weight_mismatch

# Widths whose head count every published DiT-family model shares (DiT, SiT, PPFlow, MPDiT: S, B, L, XL);
# other widths need the head count given (``num_heads``), since attention weights do not show it.
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1152: 16}

# Keys of ModelConfig that define the network a checkpoint holds (compared with ``expect``).
ARCHITECTURE_KEYS = ("depths", "patch_sizes", "hidden_size", "num_heads", "mlp_ratio", "class_tokens",
                     "modulation", "learn_sigma", "in_channels", "num_classes", "input_size", "time_embedder",
                     "time_embedder_layers", "upsample", "upsample_refine", "time_patch_sizes", "time_boundaries")


class ImportRefused(CheckpointError):
    """A file that cannot be imported; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def read_foreign(path: str | Path) -> Any:
    """torch.load with weights_only=True; only argparse.Namespace (the sources' ``args``) is allow-listed."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(path, "no such file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, TypeError, KeyError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ImportRefused(path, f"not readable as a torch checkpoint with weights_only=True (truncated, "
                                  f"corrupted or not a checkpoint): {type(err).__name__}: {first}") from None


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def plain_args(args: Any) -> dict[str, Any] | None:
    """An argparse.Namespace as a dict of plain values (what a suite checkpoint may hold)."""
    if args is None:
        return None
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    keep = (str, int, float, bool, type(None))
    plain = {k: v for k, v in values.items() if isinstance(v, keep)}
    plain.update({k: list(v) for k, v in values.items()
                  if isinstance(v, (list, tuple)) and all(isinstance(x, keep) for x in v)})
    return plain


def indexed(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many ``prefix{i}.`` entries (i = 0, 1, ...) the state dict holds."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in state):
        n += 1
    return n


def grid_side(tokens: int, path: str | Path, key: str) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ImportRefused(path, f"{key} holds {tokens} positions, not a square grid")
    return side


def heads_for(width: int, num_heads: int | None, expect_cfg: ModelConfig | None, path: str | Path) -> int:
    """Attention heads: given, else ``expect``'s, else the DiT family's for this width."""
    if num_heads is not None:
        return num_heads
    if expect_cfg is not None:
        return expect_cfg.num_heads
    if width in HEADS_BY_WIDTH:
        return HEADS_BY_WIDTH[width]
    raise ImportRefused(path, f"the tensors do not show the number of attention heads for hidden size {width} "
                              f"(known widths: {HEADS_BY_WIDTH}); give num_heads or expect=PRESET")


def check_tensors(path: str | Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]],
                  what: str) -> None:
    """Refuse unless ``state`` has exactly the ``expected`` keys with those shapes (all problems listed)."""
    missing, unexpected, reshaped = weight_mismatch(state, {k: tuple(v) for k, v in expected.items()})
    problems = [f"missing keys {missing}" if missing else "", f"unexpected keys {unexpected}" if unexpected else "",
                f"tensors of the wrong shape (found vs expected): {reshaped}" if reshaped else ""]
    problems = [p for p in problems if p]
    if problems:
        raise ImportRefused(path, f"{what} does not match the architecture read from its tensors: "
                                  + "; ".join(problems))


def check_expect(path: str | Path, cfg: ModelConfig, expect: str | None) -> None:
    """Refuse when the imported architecture is not the ``expect`` preset's."""
    if expect is None:
        return
    want = expected_config(expect, path).to_dict()
    have = cfg.to_dict()
    differ = {k: have[k] for k in ARCHITECTURE_KEYS if have[k] != want[k]}
    if differ:
        raise ImportRefused(path, f"holds {differ} where {expect} has "
                                  f"{ {k: want[k] for k in differ} } (expect={expect!r})")


def expected_config(expect: str | None, path: str | Path) -> ModelConfig | None:
    if expect is None:
        return None
    from mpdit_bench.config import ConfigError
    from mpdit_bench.models import model_config

    try:
        return model_config(expect)
    except ConfigError as err:
        raise ImportRefused(path, f"expect={expect!r} is not a preset: {err.allowed}") from None


def matching_preset(cfg: ModelConfig, family: str = "") -> str | None:
    """A preset with this architecture, those named ``family``... first (for `flops --model NAME`, `expect`),
    or None."""
    from mpdit_bench.models import list_models, model_config

    have = cfg.to_dict()
    for name in sorted(list_models(), key=lambda n: not n.startswith(family)):
        want = model_config(name).to_dict()
        if all(have[k] == want[k] for k in ARCHITECTURE_KEYS):
            return name
    return None


# ---- time direction and velocity sign -----------------------------------------------------------------------
def reverse_sinusoid_input(weight: torch.Tensor, scale: float, frequency_dim: int = 256) -> torch.Tensor:
    """The first Linear of a sinusoid time embedder, rewritten so that it gives at t what ``weight`` gave at
    1 - t. With a = scale * f: cos(a (1 - t)) = cos a cos(a t) + sin a sin(a t) and
    sin(a (1 - t)) = sin a cos(a t) - cos a sin(a t), a fixed linear map of the features at t."""
    from mpdit_bench.components.time_embed import sinusoid_frequencies

    half = frequency_dim // 2
    angle = scale * sinusoid_frequencies(frequency_dim).double()  # the suite's own float32 frequencies
    cos_a, sin_a = torch.cos(angle), torch.sin(angle)
    w = weight.double()
    w_cos, w_sin = w[:, :half], w[:, half:]
    new_cos = w_cos * cos_a + w_sin * sin_a
    new_sin = w_cos * sin_a - w_sin * cos_a
    return torch.cat([new_cos, new_sin], dim=1).to(weight.dtype)


def negate_velocity_rows(tensor: torch.Tensor, channels: int, row_width: int) -> torch.Tensor:
    """An output Linear's weight or bias with the rows of the first ``channels`` of every ``row_width``
    outputs negated (the velocity; learned-sigma channels follow it and keep their sign)."""
    sign = torch.ones(tensor.shape[0], dtype=tensor.dtype)
    sign[(torch.arange(tensor.shape[0]) % row_width) < channels] = -1
    return tensor * sign.view(-1, *[1] * (tensor.dim() - 1))


__all__ = ["ARCHITECTURE_KEYS", "HEADS_BY_WIDTH", "ImportRefused", "check_expect", "check_tensors",
           "expected_config", "grid_side", "heads_for", "indexed", "is_state_dict", "matching_preset",
           "negate_velocity_rows", "plain_args", "read_foreign", "reverse_sinusoid_input"]
