"""torchrun-aware process group setup: one code path for 1 CPU process and for 8 GPUs x N nodes.

torchrun sets RANK (global), LOCAL_RANK (index on this node) and WORLD_SIZE. The global rank names a
process's share of the data; the local rank picks its GPU (cuda:LOCAL_RANK).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mpdit_bench.validation import ConfigError

NO_CUDA = "CUDA is not available on this machine"


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(name, raw, "an integer (set by torchrun)", "environment") from None


def is_main_process() -> bool:
    """Whether this process is torchrun's rank 0, or a plain process: the one that reports."""
    return _env_int("RANK", 0) == 0


def resolve_device(device: str, key: str = "device", source: str | None = None) -> torch.device:
    """The device a command or config asks for, refused (ConfigError naming ``key``) where this machine has
    none such: "auto" is CUDA where torch sees a GPU, else the CPU; "cpu"; "cuda" or "cuda:N"."""
    allowed = "auto, cpu, cuda or cuda:N"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(key, device, allowed, source) from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(key, device, allowed, source)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(key, device, f"auto or cpu ({NO_CUDA})", source)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(key, device, f"cuda:0 to cuda:{torch.cuda.device_count() - 1} (the GPUs torch sees here)",
                          source)
    return dev


def setup(device: str = "auto", key: str = "device") -> DistInfo:
    """Join the process group torchrun describes (or none for a plain single process).

    device: "auto" (cuda when available), "cpu" or "cuda", checked by `resolve_device` under ``key``.
    NCCL on CUDA, gloo on CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(key, device, "auto, cpu, cuda")
    use_cuda = resolve_device(device, key).type == "cuda"
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    world = _env_int("WORLD_SIZE", 1)
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return DistInfo(rank, local_rank, world, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (identity for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (pickled; keep them small)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


__all__ = ["DistInfo", "NO_CUDA", "is_main_process", "resolve_device", "setup", "teardown", "barrier", "all_mean", "all_gather_objects"]
