"""The suite's CLI with torch's process-wide settings recorded while each phase works.

Training records them at every step, sampling at every batch, evaluation when it extracts the samples'
features: one JSON line each, appended to the file named by $TORCH_SETTINGS_LOG. A sweep's command path
runs this as its entry; a test installs the same recorders in its own process for the in-worker path
(tests/test_sweep_pipeline.py), so both paths are read at the same points.
"""

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

LOG_ENV = "TORCH_SETTINGS_LOG"


def _record(log: Path, phase: str) -> None:
    from mpdit_bench.engine.torch_settings import current

    with open(log, "a") as f:
        f.write(json.dumps({"phase": phase, **current().as_dict()}) + "\n")


def install_recorders(log: Path, setattr_: Callable = setattr) -> None:
    """Wrap the functions each phase calls while it works; ``setattr_`` replaces an attribute (pytest's
    ``monkeypatch.setattr`` in a test, so that it is undone afterwards)."""
    from mpdit_bench.engine.train import Trainer

    points = (("train", Trainer, "step"),
              ("sample", importlib.import_module("mpdit_bench.engine.sampling"), "sample_indices"),
              ("evaluate", importlib.import_module("mpdit_bench.evaluation.evaluate"), "extract"))
    for phase, owner, name in points:
        def recorded(*args, _work=getattr(owner, name), _phase=phase, **kwargs):
            _record(log, _phase)
            return _work(*args, **kwargs)

        setattr_(owner, name, recorded)


def read_records(log: Path) -> dict[str, set[tuple]]:
    """phase -> the distinct settings it was seen with, each as sorted (name, value) pairs."""
    seen: dict[str, set[tuple]] = {}
    for line in log.read_text().splitlines() if log.is_file() else ():
        row = json.loads(line)
        seen.setdefault(row.pop("phase"), set()).add(tuple(sorted(row.items())))
    return seen


if __name__ == "__main__":
    install_recorders(Path(os.environ[LOG_ENV]))
    from mpdit_bench.cli import main

    sys.argv[0] = "mpdit-bench"
    main()
