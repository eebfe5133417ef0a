"""The reference of the comparisons: the run every other run of its group is compared against.

``reference: LABEL`` names one run for every run; ``reference: {GROUP: LABEL, ...}`` one per group, runs
naming their group with ``group: GROUP``. ``budget.reference`` (see `budget`) has the same form.
"""

from __future__ import annotations

from typing import Any

from mpdit_bench.sweeps.runspec import RunSpec
from mpdit_bench.validation import require as _need

References = dict[str | None, str]  # group (None: every run) -> the reference run's label


def parse_references(value: Any, key: str, source: str) -> References:
    """``LABEL`` (the reference of every run, group None) or ``{GROUP: LABEL, ...}``."""
    if isinstance(value, str):
        return {None: value}
    _need(isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in value.items()),
          key, value, "a run label, or a mapping of group names to run labels", source)
    return dict(value)


def check_groups(specs: list[RunSpec], references: References, allowed: str, source: str) -> None:
    """Every run's group has a reference; ``allowed`` says which groups there are."""
    for spec in specs:
        _need(spec.group in references, "group", spec.group, allowed, source)


def check_references(specs: list[RunSpec], references: References, key: str, source: str) -> None:
    """Every run's group has a reference, and each reference label names exactly one configuration."""
    check_groups(specs, references, "no group: reference is one label" if None in references
                 else "a group of reference: " + ", ".join(map(str, references)), source)
    for group, label in references.items():
        members = [s for s in specs if s.group == group]
        if members:
            found = {s.run_id for s in members if s.label == label}
            _need(len(found) == 1, key + ("" if group is None else f".{group}"), label,
                  "the label of exactly one run" + ("" if group is None else f" of group {group}") + ": "
                  + ", ".join(dict.fromkeys(s.label for s in members)), source)
