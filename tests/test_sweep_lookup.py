"""Experiment names resolve from any directory: ./experiments first, then the suite's own experiments/."""

import pytest
import yaml

from mpdit_bench.config import ConfigError
from mpdit_bench.sweeps.experiment import load_experiment
from mpdit_bench.sweeps.lookup import SUITE_EXPERIMENTS_DIR, find_experiment


def test_a_shipped_experiment_is_found_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = find_experiment("ablation_k")
    assert path == SUITE_EXPERIMENTS_DIR / "ablation_k.yaml"
    assert load_experiment(path).name == "ablation_k"
    assert find_experiment("search_space", kind="space") == SUITE_EXPERIMENTS_DIR / "search_space.yaml"


def test_the_current_directory_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    own = tmp_path / "experiments" / "ablation_k.yaml"
    own.write_text(yaml.safe_dump({"name": "ablation_k", "scales": {}}))
    assert find_experiment("ablation_k").resolve() == own.resolve()
    assert find_experiment("ablation_k.yaml").resolve() == own.resolve()


def test_an_unknown_name_lists_the_places_searched_and_the_names_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mine.yaml").write_text(yaml.safe_dump({"name": "mine", "scales": {}}))
    with pytest.raises(ConfigError) as err:
        find_experiment("no_such_experiment")
    message = str(err.value)
    assert "no_such_experiment" in message
    assert "experiments/ (mine)" in message
    assert str(SUITE_EXPERIMENTS_DIR) in message and "ablation_k" in message
