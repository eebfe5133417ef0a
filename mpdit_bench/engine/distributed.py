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
        raise ValueError(f"environment variable {name}={raw!r} is invalid; allowed: an integer (set by torchrun)") from None


def is_main_process() -> bool:
    """Whether this process is torchrun's rank 0, or a plain process: the one that reports."""
    return _env_int("RANK", 0) == 0


def setup(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (or none for a plain single process).

    device: "auto" (cuda when available), "cpu" or "cuda". NCCL on CUDA, gloo on CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {device!r} is invalid; allowed: auto, cpu, cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device; use device: cpu")
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


__all__ = ["DistInfo", "is_main_process", "setup", "teardown", "barrier", "all_mean", "all_gather_objects"]
