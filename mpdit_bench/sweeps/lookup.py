"""Experiment files as users name them: a path, a file name or a bare name looked up in experiments/.

A bare name is looked up in ``experiments/`` of the current directory first, then in the suite's own
``experiments/`` beside the package (the repository checkout of an editable install), so that a shipped
experiment runs from any directory and a project's own file of the same name takes precedence.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mpdit_bench.config import ConfigError

EXPERIMENTS_DIR = Path("experiments")
SUITE_EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"


def experiment_dirs() -> list[Path]:
    """The folders a bare name is looked up in, in order: ./experiments, then the suite's experiments/."""
    dirs = [EXPERIMENTS_DIR]
    if SUITE_EXPERIMENTS_DIR.is_dir() and SUITE_EXPERIMENTS_DIR != EXPERIMENTS_DIR.resolve():
        dirs.append(SUITE_EXPERIMENTS_DIR)
    return dirs


def experiment_names(folder: Path = EXPERIMENTS_DIR, kind: str = "scales") -> list[str]:
    """Names of the YAML files in ``folder`` with the top-level key ``kind``: ``scales`` for experiments,
    ``space`` for search spaces (the folder also holds run configs)."""
    names = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and kind in data:
            names.append(path.stem)
    return names


def find_experiment(name: str, folder: Path | None = None, kind: str = "scales") -> Path:
    """``name`` itself when it is a file; else ``DIR/name`` or ``DIR/name.yaml`` for DIR in ``folder`` (when
    given) or `experiment_dirs`. The error lists the folders searched and the experiments (``kind``: see
    `experiment_names`) each holds."""
    given = Path(name)
    if given.is_file():
        return given
    folders = [folder] if folder is not None else experiment_dirs()
    for where in folders:
        for path in (where / given.name, where / f"{given.name}.yaml"):
            if path.is_file():
                return path
    found = [f"{where}/ ({', '.join(names) if (names := experiment_names(where, kind)) else 'none'})"
             for where in folders]
    raise ConfigError("experiment", name, "an experiment YAML file, or the name of one in "
                      + "; ".join(found), "command line")


__all__ = ["EXPERIMENTS_DIR", "SUITE_EXPERIMENTS_DIR", "experiment_dirs", "experiment_names", "find_experiment"]
