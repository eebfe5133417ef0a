"""Training compute in readable units: one SI prefix of FLOP per axis or table, chosen from the data."""

from __future__ import annotations

import math
from typing import Iterable

PREFIXES = ((1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1.0, "FLOP"))


def flop_unit(values: Iterable[float]) -> tuple[float, str]:
    """(divisor, unit) that puts the largest of ``values`` between 1 and 1000."""
    top = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)
    return next(((scale, name) for scale, name in PREFIXES if top >= scale), PREFIXES[-1])


def format_flops(value: float | None, digits: int = 3) -> str:
    """``2.5e14`` -> ``250 TFLOP``."""
    if value is None or not math.isfinite(value):
        return "—"
    scale, name = flop_unit([value])
    return f"{value / scale:.{digits}g} {name}"
