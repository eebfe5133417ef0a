"""Counting: parameters and FLOPs of any configuration, the one place where they are computed.

- ``analytic``: the FLOP conventions, the helpers every component's ``flops()`` uses (tallied by kind);
- ``measure``: params, true FLOPs (fvcore), the analytic count, the MPDiT paper's convention, ptflops,
  the PPFlow trajectory average, training FLOPs per sample, and named presets counted into dicts.

The model's own modules import ``analytic`` while they are being defined, so the names of ``measure`` are
loaded on first use: ``from mpdit_bench.counting import count_model`` works as usual.
"""

from __future__ import annotations

from typing import Any

_MEASURE = ("analytic_counts", "build_for_counting", "conv_transpose_output_extra", "count", "count_config",
            "count_model", "count_schedule", "example_inputs",
            "fvcore_flops", "paper_convention_flops", "param_count", "param_counts", "preset_rows", "ptflops_macs",
            "storage_param_count",
            "training_flops_per_sample", "trajectory_flops")


def __getattr__(name: str) -> Any:
    if name in _MEASURE:
        from mpdit_bench.counting import measure

        return getattr(measure, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_MEASURE)
