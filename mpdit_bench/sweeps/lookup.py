"""Experiment files as users name them: a path, a file name or a bare name looked up in experiments/."""

from __future__ import annotations

from pathlib import Path

import yaml

from mpdit_bench.config import ConfigError

EXPERIMENTS_DIR = Path("experiments")


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


def find_experiment(name: str, folder: Path = EXPERIMENTS_DIR, kind: str = "scales") -> Path:
    """``name`` itself when it is a file; else ``folder/name``, ``folder/name.yaml``. The error lists
    the experiments (``kind``: see `experiment_names`) in ``folder``."""
    given = Path(name)
    for path in (given, folder / given.name, folder / f"{given.name}.yaml"):
        if path.is_file():
            return path
    names = experiment_names(folder, kind)
    allowed = (f"an experiment YAML file, or the name of one in {folder}/: " + ", ".join(names) if names
               else f"an experiment YAML file ({folder}/ holds none here: run from the project root)")
    raise ConfigError("experiment", name, allowed, "command line")


__all__ = ["EXPERIMENTS_DIR", "experiment_names", "find_experiment"]
