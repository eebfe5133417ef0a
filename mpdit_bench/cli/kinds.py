"""Which of the suite's YAML files a path holds, so that a file given to the wrong command is sent to the
command that takes it instead of being refused key by key."""

from __future__ import annotations

from pathlib import Path

import yaml

from mpdit_bench.cli.common import fail

KINDS = {  # kind: (the words for it, the command that takes it, top-level keys only that kind has)
    "experiment": ("an experiment", "sweep", ("scales", "axes")),
    "search space": ("a search space", "search", ("space", "objectives")),
    "run config": ("a run config", "train", ("model", "train", "data")),
}


def file_kind(path: str | Path) -> str | None:
    """The kind of suite file ``path`` holds, or None when it is none of them (or unreadable)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    return next((kind for kind, (_, _, keys) in KINDS.items() if any(key in data for key in keys)), None)


def require_kind(path: str | Path, kind: str) -> None:
    """Refuse a file of another kind than ``kind``, naming what it is and the command that takes it. A file
    of no known kind passes: its loader names what is wrong in it."""
    found = file_kind(path)
    if found is not None and found != kind:
        words, command, _ = KINDS[found]
        fail(f"{path} is {words}, not {KINDS[kind][0]}: use `mpdit-bench {command} {path}`")
