"""The GPU check's time budget: whatever phase runs at the deadline is stopped by a SIGALRM."""

from __future__ import annotations

import signal
import time
from typing import Any


class BudgetExceeded(Exception):
    """The check's time budget ran out during a phase."""


class Budget:
    """Seconds left until the deadline; a SIGALRM at the deadline raises BudgetExceeded in the phase that runs
    past it (where the platform has no interval timer, phases are only skipped once the deadline is past)."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self._previous = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _alarm(self, *_: Any) -> None:
        raise BudgetExceeded("time budget exhausted")

    def __enter__(self) -> "Budget":
        if hasattr(signal, "setitimer") and self.left() > 0:
            self._previous = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, self.left())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)


__all__ = ["Budget", "BudgetExceeded"]
