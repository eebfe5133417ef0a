"""The metric vocabulary: one row per metric a run can report, and the `evaluate --metrics` words that ask for it.

A metric's ``name`` is its key in `evaluate`'s result, in a run's record and in an experiment's
``eval.metrics``. Its ``flag`` is the `--metrics` word that computes it: one word can compute several
metrics (``proxy``: the five Fashion-MNIST proxy metrics), and a flag may have aliases (``precision`` for
``prec``). Reports read the direction and the range; the bootstrap clips its intervals to the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

INCEPTION, PROXY, HELDOUT = "inception", "proxy", "heldout"
HELDOUT_LOSS = "heldout_loss"  # `evaluation.heldout`'s metric, reported beside evaluate's


@dataclass(frozen=True)
class Metric:
    """One metric: its key, how it reads, what computes it, which way is better and its range."""

    name: str                    # result / record key
    label: str                   # for axes and legends
    flag: Optional[str]          # the `evaluate --metrics` word that computes it; None: not computed by evaluate
    features: str                # what it is computed from: INCEPTION, PROXY or HELDOUT
    higher_is_better: bool
    low: Optional[float] = None  # the metric's range; None = unbounded on that side
    high: Optional[float] = None
    bootstrap: bool = True       # has a bootstrap interval ``<name>_ci95`` when replicates are asked for

    @property
    def range(self) -> tuple[Optional[float], Optional[float]]:
        return self.low, self.high


# KID is an unbiased MMD^2 estimate and can be negative, so it has no lower bound; IS is at least 1.
METRICS: tuple[Metric, ...] = (
    Metric("fid", "FID", "fid", INCEPTION, False, 0.0),
    Metric("sfid", "sFID", "sfid", INCEPTION, False, 0.0),
    Metric("is", "Inception Score", "is", INCEPTION, True, 1.0),
    Metric("precision", "precision", "prec", INCEPTION, True, 0.0, 1.0),
    Metric("recall", "recall", "recall", INCEPTION, True, 0.0, 1.0),
    Metric("kid", "KID", "kid", INCEPTION, False),
    Metric("fd_fmnist_proxy", "FD (Fashion-MNIST proxy)", "proxy", PROXY, False, 0.0),
    Metric("kid_fmnist_proxy", "KID (Fashion-MNIST proxy)", "proxy", PROXY, False),
    Metric("precision_fmnist_proxy", "precision (Fashion-MNIST proxy)", "proxy", PROXY, True, 0.0, 1.0),
    Metric("recall_fmnist_proxy", "recall (Fashion-MNIST proxy)", "proxy", PROXY, True, 0.0, 1.0),
    Metric("class_accuracy_fmnist_proxy", "class accuracy (Fashion-MNIST proxy)", "proxy", PROXY, True, 0.0, 1.0),
    Metric(HELDOUT_LOSS, "held-out flow-matching loss", None, HELDOUT, False, 0.0),
)
BY_NAME = {m.name: m for m in METRICS}
EVALUATED = tuple(m.name for m in METRICS if m.flag)  # what `evaluate` can report; an experiment's eval.metrics

FLAGS = tuple(dict.fromkeys(m.flag for m in METRICS if m.flag))  # fid, sfid, is, prec, recall, kid, proxy
FLAG_ALIASES = {"precision": "prec"}  # other words `--metrics` accepts for a flag
INCEPTION_FLAGS = tuple(dict.fromkeys(m.flag for m in METRICS if m.features == INCEPTION))
DEFAULT_FLAGS = INCEPTION_FLAGS


def metric(name: str) -> Metric:
    if name not in BY_NAME:
        raise KeyError(f"metric {name!r} is unknown; allowed: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def higher_is_better(name: str) -> bool:
    return metric(name).higher_is_better


def metric_range(name: str) -> tuple[Optional[float], Optional[float]]:
    """(low, high) bounds of the metric, None where unbounded; (None, None) for a name not in the table."""
    return BY_NAME[name].range if name in BY_NAME else (None, None)


def clip(name: str, low: float, high: float) -> tuple[float, float]:
    """An interval (low, high) of the metric clipped to its range."""
    floor, ceiling = metric_range(name)
    if floor is not None:
        low, high = max(low, floor), max(high, floor)
    if ceiling is not None:
        low, high = min(low, ceiling), min(high, ceiling)
    return low, high


def canonical(word: str) -> Optional[str]:
    """A `--metrics` word or alias -> its flag (``precision`` -> ``prec``); None for a word that names none."""
    word = word.strip().lower()
    word = FLAG_ALIASES.get(word, word)
    return word if word in FLAGS else None


def flags_for(names: Iterable[str]) -> tuple[str, ...]:
    """Result keys -> the `--metrics` flags that compute them, in order, each once."""
    return tuple(dict.fromkeys(metric(n).flag for n in names if metric(n).flag))


def names_for(flags: Iterable[str]) -> tuple[str, ...]:
    """Flags -> the result keys they compute."""
    wanted = set(flags)
    return tuple(m.name for m in METRICS if m.flag in wanted)
