"""The checks of a scale's settings (an experiment's ``scales.NAME`` or a search space's ``settings``).

The sweep's own keys are checked here; what the run config holds (data, train, sample, model) is checked
by the training engine itself (`check_run`), so that whatever ``train`` or ``sample`` would refuse is
refused when the file is loaded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from mpdit_bench.config import ConfigError
from mpdit_bench.evaluation.metric_table import EVALUATED, HELDOUT_LOSS
from mpdit_bench.sweeps.runspec import RunSpec
from mpdit_bench.validation import Key, check_section, did_you_mean, is_int
from mpdit_bench.validation import require as _need

T = TypeVar("T")

SCALE_KEYS = ("resolution", "nproc", "model_overrides", "data", "train", "sample", "eval", "slurm", "seeds", "workers")
MAPPING_KEYS = ("model_overrides", "data", "train", "sample", "eval", "slurm")
METRICS = EVALUATED  # the result keys `evaluate` reports (`evaluation.metric_table`)
SINGLE_SEED = ("not-compared", "evaluation-noise")
EVAL_KEYS: dict[str, Key] = {
    "ref": Key(None, lambda v: isinstance(v, str), "a reference path or name (string)"),
    "metrics": Key(None, lambda v: isinstance(v, list) and bool(v) and all(x in METRICS for x in v),
                   "a non-empty list from " + ", ".join(METRICS)),
    "primary": Key(None, lambda v: v in METRICS, "one of eval.metrics"),
    "device": Key(None, lambda v: isinstance(v, str), "cpu, cuda, cuda:1, ..."),
    "batch_size": Key(None, lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "bootstrap": Key(None, lambda v: is_int(v) and v >= 0 and v != 1,
                     "0 (no intervals) or a number of bootstrap replicates >= 2"),
    "heldout": Key(None, lambda v: isinstance(v, bool), "true or false (the held-out flow-matching loss on the fixed grid)"),
    # quality along training (sweeps/curve.py); outside the run id
    "every": Key(None, lambda v: is_curve_points(v),
                 "a non-empty list of training steps (integers >= 1) or of fractions of the run's training "
                 "(numbers in (0, 1] written with a point, e.g. [0.25, 0.5, 0.75, 1.0])"),
    "curve_metrics": Key(None, lambda v: isinstance(v, list) and bool(v) and all(x in CURVE_METRICS for x in v),
                         "a non-empty list from " + ", ".join((HELDOUT_LOSS,) + METRICS)
                         + " (a sample metric must also be in eval.metrics)"),
    "curve_samples": Key(None, lambda v: is_int(v) and v >= 1,
                         "an integer >= 1 (samples drawn at each point of eval.every for its sample metrics)"),
    "single_seed": Key(None, lambda v: v in SINGLE_SEED, "one of " + ", ".join(SINGLE_SEED) + " (how a report treats "
                       "configurations with one seed: no verdict, or a verdict on evaluation noise only)"),
}
CURVE_METRICS = (HELDOUT_LOSS,) + METRICS


def is_curve_points(value: Any) -> bool:
    """``eval.every``: steps (ints >= 1) or fractions of the training (floats in (0, 1])."""
    def point(v: Any) -> bool:
        return (is_int(v) and v >= 1) or (isinstance(v, float) and 0.0 < v <= 1.0)

    return isinstance(value, list) and bool(value) and all(point(v) for v in value)


@dataclass
class ScaleSettings:
    """One scale's section of an experiment (``scales.NAME``), or a search space's ``settings``."""

    resolution: int = 256  # pixels of the paper-scale images
    nproc: int = 1
    model_overrides: dict[str, Any] = field(default_factory=dict)  # applied after the CPU rule
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)
    seeds: int | list[int] | None = None
    workers: int = 1  # local workers a sweep starts unless ``sweep --workers`` says otherwise


def parse_scale(section: Any, where: str, source: str) -> ScaleSettings:
    """The keys of one scale's section, as written in the file (before any run is resolved)."""
    _need(isinstance(section, dict), where, section, "a mapping with keys " + ", ".join(SCALE_KEYS), source)
    for key, value in section.items():
        _need(key in SCALE_KEYS, f"{where}.{key}", value, "one of " + ", ".join(SCALE_KEYS), source)
        if key in MAPPING_KEYS:
            _need(isinstance(value, dict), f"{where}.{key}", value, "a mapping", source)
        if key == "workers":
            _need(is_int(value) and value >= 1, f"{where}.workers", value,
                  "a number of local worker processes >= 1", source)
        if key == "seeds":
            parse_seeds(value, f"{where}.seeds", source)
    return ScaleSettings(**copy.deepcopy(section))


def parse_seeds(value: Any, key: str, source: str) -> int | list[int]:
    """``seeds: N`` (N replicates: the run's train.seed, +1, ...) or ``seeds: [s0, s1, ...]``."""
    ok = (is_int(value) and value >= 1) or (isinstance(value, list) and value and all(is_int(v) and v >= 0
                                                                                        for v in value)
                                             and len(set(value)) == len(value))
    _need(ok, key, value, "a number of replicates >= 1, or a list of distinct training seeds >= 0", source)
    return value


def check_settings(nproc: Any, train: dict[str, Any], sample: dict[str, Any], eval: dict[str, Any], scale: str,
                   source: str) -> None:
    """The sweep's own keys of one resolved run (its scale's section with the run's overrides applied)."""
    def positive_int(v: Any) -> bool:
        return is_int(v) and v > 0

    _check_known_keys(train, sample, source)  # a misspelled key is named before any key it stands for
    _need(positive_int(nproc), "nproc", nproc, "a positive integer (processes for torchrun)", source)
    _need(positive_int(train.get("global_batch")), f"scales.{scale}.train.global_batch", train.get("global_batch"),
          "a positive integer", source)
    _need(("steps" in train) != ("epochs" in train), f"scales.{scale}.train.steps", train.get("steps"),
          "exactly one of train.steps (int) or train.epochs (number, with train.dataset_size)", source)
    _need(positive_int(sample.get("num")), "sample.num", sample.get("num"), "a positive integer", source)
    if "device" in sample:
        _need(sample["device"] in ("auto", "cpu", "cuda"), "sample.device", sample["device"], "auto, cpu, cuda",
              source)
    ev = check_section(eval, EVAL_KEYS, source, "eval", defaults=False)
    for key in ("metrics", "ref"):
        _need(key in ev, f"eval.{key}", None, EVAL_KEYS[key].allowed, source)
    check_source_spec(ev["ref"], "eval.ref", source)
    if "primary" in ev:
        _need(ev["primary"] in ev["metrics"], "eval.primary", ev["primary"],
              "one of eval.metrics: " + ", ".join(ev["metrics"]), source)
    for name in ev.get("curve_metrics") or []:
        _need(name == HELDOUT_LOSS or name in ev["metrics"], "eval.curve_metrics", name,
              f"{HELDOUT_LOSS} or one of eval.metrics: " + ", ".join(ev["metrics"]), source)


def _check_known_keys(train: dict[str, Any], sample: dict[str, Any], source: str) -> None:
    """Refuse a key that neither the training engine nor the sweep knows, with the closest known one."""
    from mpdit_bench.engine.run_config import TRAIN_KEYS
    from mpdit_bench.engine.sampling import SAMPLE_KEYS
    from mpdit_bench.sweeps.runspec import SWEEP_SAMPLE_KEYS

    for section, given, known in (("train", train, [*TRAIN_KEYS, "epochs", "dataset_size"]),
                                  ("sample", sample, [*SAMPLE_KEYS, *SWEEP_SAMPLE_KEYS])):
        for key, value in given.items():
            _need(key in known, f"{section}.{key}", value,  # the scale's section or a variant's
                  did_you_mean(key, known) + "one of the keys " + ", ".join(known), source)


def check_source_spec(value: str, key: str, source: str) -> None:
    """An image source named in the file (a dataset name, an .npz, an image folder), checked in form
    without reading it; a path missing on this machine is refused only when the sweep opens it."""
    from mpdit_bench.evaluation.sources import SPEC_HELP, SourceError, check_spec

    try:
        check_spec(value)
    except SourceError as err:
        raise ConfigError(key, value, f"{SPEC_HELP}; here {err}", source) from None


def check_run(spec: RunSpec, source: str) -> None:
    """The training engine's own checks (data, train, sample, model) on the run config a run trains with."""
    from mpdit_bench.engine.run_config import validate_run_config

    validate_run_config(spec.run_config(), f"{source} (run {spec.label!r}, scale {spec.scale})")


def checked(fn: Callable[[], T], key: str, source: str) -> T:
    """``fn()``, its ConfigError re-worded for this file under ``key``: ``key.inner_key``."""
    try:
        return fn()
    except ConfigError as err:
        raise ConfigError(f"{key}.{err.key}", err.value, err.allowed, source) from None


def looked_up(fn: Callable[[], T], key: str, value: Any, source: str) -> T:
    """A look-up (a preset, a published table or row), its ConfigError re-worded as ``key`` = ``value``."""
    try:
        return fn()
    except ConfigError as err:
        raise ConfigError(key, value, err.allowed, source) from None
