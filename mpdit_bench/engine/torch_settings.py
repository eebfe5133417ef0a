"""torch's process-wide numeric settings, read and applied as one value.

A phase (training, sampling, the proxy classifier, the bootstrap) applies the settings it needs for its own
duration and leaves the process as it found it. A sweep worker runs one-process phases one after another in
its own process: each then sees the same settings as the command it stands for, which starts from a fresh
process. The attention path is not here: it is a property of a model (`models.blocks.explicit_attention`).

TF32 is held through the ``allow_tf32`` flags only: torch keeps ``torch.set_float32_matmul_precision`` in
the same state as the matmul flag, and mixing the two interfaces makes torch refuse to read either back.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields
from typing import Iterator

import torch


@dataclass(frozen=True)
class TorchSettings:
    """Each field a process-wide setting; ``None`` leaves that setting as it is."""

    threads: int | None = None  # intra-op CPU threads
    matmul_tf32: bool | None = None  # TF32 in CUDA float32 matmuls
    cudnn_tf32: bool | None = None  # TF32 in cuDNN convolutions
    cudnn_benchmark: bool | None = None  # cuDNN picks algorithms by timing them
    cudnn_deterministic: bool | None = None  # cuDNN uses deterministic algorithms only

    def apply(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if self.matmul_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = self.matmul_tf32
        if self.cudnn_tf32 is not None:
            torch.backends.cudnn.allow_tf32 = self.cudnn_tf32
        if self.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
        if self.cudnn_deterministic is not None:
            torch.backends.cudnn.deterministic = self.cudnn_deterministic

    def as_dict(self) -> dict[str, int | bool | None]:
        return asdict(self)


def current() -> TorchSettings:
    """Every setting as the process has it now."""
    return TorchSettings(threads=torch.get_num_threads(), matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                         cudnn_tf32=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark,
                         cudnn_deterministic=torch.backends.cudnn.deterministic)


@contextlib.contextmanager
def applied(settings: TorchSettings) -> Iterator[TorchSettings]:
    """Apply ``settings`` inside the block and restore every setting on leaving it, also on an exception.
    Yields the settings in force inside."""
    before = current()
    try:
        settings.apply()
        yield current()
    finally:
        before.apply()


def torch_settings(**values: int | bool | None) -> contextlib.AbstractContextManager[TorchSettings]:
    """``applied(TorchSettings(**values))``: e.g. ``with torch_settings(threads=1): ...``."""
    unknown = sorted(set(values) - {f.name for f in fields(TorchSettings)})
    if unknown:
        raise TypeError(f"unknown torch setting {unknown[0]!r}; allowed: "
                        f"{', '.join(f.name for f in fields(TorchSettings))}")
    return applied(TorchSettings(**values))


__all__ = ["TorchSettings", "applied", "current", "torch_settings"]
