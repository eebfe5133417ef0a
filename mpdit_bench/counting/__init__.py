"""Counting: parameters and FLOPs of any configuration, the one place where they are computed.

``measure`` holds params, true FLOPs (fvcore), the analytic count (each component's ``flops()``, following
the conventions of ``mpdit_bench.components.flops``), the MPDiT paper's convention, ptflops, the PPFlow
trajectory average, training FLOPs per sample, and named presets counted into dicts.
"""

from mpdit_bench.counting.measure import (analytic_counts, build_for_counting, conv_transpose_output_extra, count,
                                          count_config, count_model, count_schedule, example_inputs, fvcore_flops,
                                          paper_convention_flops, param_count, param_counts, preset_rows,
                                          ptflops_macs, storage_param_count, training_flops_per_sample,
                                          trajectory_flops)

__all__ = ["analytic_counts", "build_for_counting", "conv_transpose_output_extra", "count", "count_config",
           "count_model", "count_schedule", "example_inputs", "fvcore_flops", "paper_convention_flops",
           "param_count", "param_counts", "preset_rows", "ptflops_macs", "storage_param_count",
           "training_flops_per_sample", "trajectory_flops"]
