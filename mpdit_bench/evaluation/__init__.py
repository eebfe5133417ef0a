"""Evaluation: ADM's FID / sFID / IS / precision / recall on torch-fidelity's Inception, KID, and a CPU proxy."""

from mpdit_bench.evaluation.evaluate import DEFAULT_METRICS, METRICS, RESULT_KEYS, evaluate, parse_metrics
from mpdit_bench.evaluation.sources import SourceError, open_source, write_npz

__all__ = ["evaluate", "parse_metrics", "open_source", "write_npz", "SourceError", "METRICS", "DEFAULT_METRICS",
           "RESULT_KEYS"]
