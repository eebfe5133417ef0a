"""Every run of every experiment file is accepted by the training engine's run-config check."""

from pathlib import Path

import pytest

from mpdit_bench.engine.run_config import validate_run_config
from mpdit_bench.sweeps.expand import expand
from mpdit_bench.sweeps.experiment import load_experiment

EXPERIMENTS = sorted(p for p in Path("experiments").glob("*.yaml")
                     if not p.name.startswith(("train_", "search_")) and p.name != "ppflow_fmnist_cpu.yaml")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_run_config_passes_the_engine_validation(path, scale):
    runs = expand(load_experiment(path), scale)
    assert runs
    for spec in runs:
        validate_run_config(spec.run_config(), source=f"{path} {scale} {spec.run_id}")
