"""The device, clocks and peak-memory meters shared by every measurement.

Peak memory: on CUDA torch.cuda.max_memory_allocated (bytes held by tensors); on CPU the peak resident set
size, sampled from /proc/self/statm every 2 ms (torch's CPU allocator is not seen by tracemalloc).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from typing import Any, Callable

import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA where torch sees a GPU, else the CPU; a device this machine lacks is refused."""
    from mpdit_bench.engine.distributed import resolve_device as checked

    return checked(device, "--device")


def synchronize(dev: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock reading covers it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], Any], reps: int, dev: torch.device) -> list[float]:
    """Seconds of each of ``reps`` calls: CUDA events on a GPU, the host clock elsewhere."""
    if dev.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(dev)
        return [start.elapsed_time(end) / 1e3 for start, end in events]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


class RssPeak:
    """Peak RSS (bytes) over a with-block, by polling /proc/self/statm in a thread."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> "RssPeak":
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def release_host_memory() -> None:
    gc.collect()
    try:  # give freed heap back to the OS so that the next model's RSS baseline is honest
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def free_memory(dev: torch.device) -> None:
    """Host memory back to the OS and, on CUDA, the allocator's cached blocks back to the driver."""
    release_host_memory()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


__all__ = ["RssPeak", "free_memory", "release_host_memory", "resolve_device", "synchronize", "timed"]
