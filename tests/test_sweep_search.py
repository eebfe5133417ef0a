"""The search: a tiny space with a fake cheap objective, the GFLOPs budget, the median pruning rule."""

import itertools
import sys
from pathlib import Path

import optuna
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from sweep_fakes import FakePhases, read_events  # noqa: E402

from mpdit_bench.config import ConfigError  # noqa: E402
from mpdit_bench.counting import analytic_counts  # noqa: E402
from mpdit_bench.sweeps.search import create_study, load_space, median_rule, run_search, suggest, trial_spec  # noqa: E402

ROOT = Path(__file__).parent.parent
SPACE = {
    "name": "tiny_search", "scale": "cpu", "base": {"model": "MPDiT-B"}, "head_dim": 32,
    "settings": {"data": {"name": "fashion-mnist"}, "train": {"global_batch": 4, "steps": 4},
                 "sample": {"num": 4}, "eval": {"ref": "fashion-mnist:test", "metrics": ["fd_fmnist_proxy"]}},
    "space": {"upsample": ["linear", "conv_transpose"], "hidden_size": [64, 128], "depth": {"low": 4, "high": 6},
              "refine_depth": {"low": 1, "high": 3}, "hierarchy": [[4, 2]], "class_tokens": [1]},
    "objectives": [{"name": "fd_fmnist_proxy"}, {"name": "gflops"}],
    "sampler": {"name": "nsga2", "population_size": 4, "seed": 0},
    "pruning": {"rule": "median", "min_trials": 2},
}


class FakeQuality(FakePhases):
    """A fake, cheap objective: wider and deeper is 'better', so quality trades against GFLOPs."""

    def evaluate(self, spec, run_dir):
        self._step(spec, "evaluate")
        cfg = spec.model_config
        return {"fd_fmnist_proxy": 100.0 / (cfg["hidden_size"] * sum(cfg["depths"]))}


def all_gflops(space):
    dom = space.space
    combos = itertools.product(dom["upsample"], dom["hidden_size"], range(4, 7), range(1, 4))
    params = [dict(upsample=u, hidden_size=h, depth=d, refine_depth=k, hierarchy="4,2", class_tokens=1)
              for u, h, d, k in combos]
    return sorted(analytic_counts(trial_spec(p, space)[1])["gflops"] for p in params)


@pytest.mark.slow
def test_search_respects_budget_and_finds_a_front(tmp_path):
    path = tmp_path / "space.yaml"
    data = dict(SPACE)
    space = load_space(_write(path, data))
    gflops = all_gflops(space)
    data["budget"] = {"max_gflops": gflops[len(gflops) // 2]}  # about half of the space is infeasible
    space = load_space(_write(path, data))
    log = tmp_path / "events.log"
    study = run_search(space, 8, storage=str(tmp_path / "journal.log"), results_dir=tmp_path / "results",
                       pipeline=FakeQuality(log))
    trials = study.get_trials()
    infeasible = [t for t in trials if "infeasible" in t.user_attrs]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert infeasible and complete
    trained = {e["run"] for e in read_events(log) if e["phase"] == "train"}
    for t in infeasible:  # pruned before training: no run was started for them
        assert t.state == optuna.trial.TrialState.PRUNED and t.user_attrs["gflops"] > data["budget"]["max_gflops"]
        assert "run_id" not in t.user_attrs
    for t in complete:
        assert t.values[1] == pytest.approx(t.user_attrs["gflops"])
        assert t.values[1] <= data["budget"]["max_gflops"]
        assert t.user_attrs["run_id"] in trained
        assert t.user_attrs["val_curve"]  # the validation hook saw the training curve
    front = study.best_trials
    assert front and all(t.state == optuna.trial.TrialState.COMPLETE for t in front)
    # the journal storage is shared: a second call continues the same study
    again = run_search(space, 2, storage=str(tmp_path / "journal.log"), results_dir=tmp_path / "results",
                       pipeline=FakeQuality(log))
    assert len(again.get_trials()) == len(trials) + 2


class FailingTrain(FakeQuality):
    """Training raises ``error`` (after the count phase ran)."""

    def __init__(self, log, error):
        super().__init__(log)
        self.error = error

    def train(self, spec, run_dir, on_validation=None):
        self._step(spec, "train")
        raise self.error


def _one_trial(tmp_path, error):
    space = load_space(_write(tmp_path / "space.yaml", SPACE))
    study = run_search(space, 1, storage=str(tmp_path / "journal.log"), results_dir=tmp_path / "results",
                       pipeline=FailingTrain(tmp_path / "events.log", error))
    (trial,) = study.get_trials()
    return trial


def test_a_failed_phase_fails_its_trial_with_the_message(tmp_path):
    from mpdit_bench.sweeps.pipeline import PhaseError

    trial = _one_trial(tmp_path, PhaseError("command failed with exit code 3: train config.yaml"))
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["failed"] == "phase failed"
    assert "exit code 3" in trial.user_attrs["error"]


@pytest.mark.parametrize("make_error", [
    lambda: __import__("torch").cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    lambda: __import__("mpdit_bench.sweeps.pipeline", fromlist=["PhaseError"]).PhaseError(
        "command failed with exit code 1: train\ntorch.OutOfMemoryError: CUDA out of memory."),
], ids=["in-process", "command"])
def test_an_out_of_memory_error_fails_its_trial_as_one(tmp_path, make_error):
    trial = _one_trial(tmp_path, make_error())
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["failed"] == "out of memory"
    assert "CUDA out of memory" in trial.user_attrs["error"]


@pytest.mark.parametrize("error", [ValueError("a bug"), RuntimeError("an unexpected error")],
                         ids=["ValueError", "RuntimeError"])
def test_any_other_error_stops_the_search(tmp_path, error):
    with pytest.raises(type(error), match=str(error)):
        _one_trial(tmp_path, error)


def test_a_trial_resolves_to_the_run_a_sweep_makes_of_the_same_model(tmp_path):
    """Search and sweep resolve runs through one function: a paper-scale trial and the experiment run of the
    same model and settings are the same run (same id, config, overrides and recorded resolution)."""
    from mpdit_bench.sweeps.experiment import load_experiment
    from mpdit_bench.sweeps.search import overrides_from_params

    settings = {"resolution": 512, "nproc": 2, "data": {"name": "latents", "path": "latents"},
                "train": {"global_batch": 32, "steps": 10, "seed": 3}, "sample": {"num": 16},
                "eval": {"ref": "refs/reference.npz", "metrics": ["fid"]}}
    space = load_space(_write(tmp_path / "space.yaml", {**SPACE, "scale": "paper", "head_dim": 64,
                                                         "settings": settings,
                                                         "objectives": [{"name": "fid"}, {"name": "gflops"}]}))
    params = {"hidden_size": 384, "depth": 6, "refine_depth": 2, "hierarchy": "4,2", "upsample": "conv_transpose"}
    trial, cfg = trial_spec(params, space)
    experiment = {"name": "same", "base": {"model": "MPDiT-B"}, "scales": {"paper": settings},
                  "axes": [{"variants": [{"model_overrides": overrides_from_params(params, space)}]}]}
    (run,) = load_experiment(_write(tmp_path / "exp.yaml", experiment)).runs("paper")
    assert trial.run_id == run.run_id and trial.model_config == run.model_config == cfg.to_dict()
    assert trial.model_overrides == run.model_overrides and trial.resolution == run.resolution == 512
    assert trial.seed == run.seed == 3 and trial.nproc == run.nproc == 2


def test_median_rule_prunes_worse_than_median():
    study = optuna.create_study(directions=["minimize", "minimize"])
    for loss in (1.0, 2.0, 3.0):
        study.add_trial(optuna.trial.create_trial(values=[loss, 1.0], user_attrs={"val_curve": {"10": loss}}))
    trial = study.ask()
    hook = median_rule(study, trial, {"rule": "median", "warmup_steps": 5, "min_trials": 3})
    hook(2, 99.0)  # warm-up: never pruned
    hook(10, 1.5)  # better than the median 2.0
    with pytest.raises(optuna.TrialPruned):
        hook(10, 2.5)
    assert study.trials[-1].user_attrs["pruned_at"]["median"] == 2.0


def test_a_worker_joining_a_study_does_not_repeat_its_trials(tmp_path):
    """A seeded sampler restarted on a shared study would propose the first worker's parameters again."""
    space = load_space(_write(tmp_path / "space.yaml", SPACE))

    def proposals(storage, n=6):
        study = create_study(space, str(storage), tmp_path / "results")
        out = []
        for _ in range(n):
            trial = study.ask()
            out.append(suggest(trial, space.space))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return out

    first = proposals(tmp_path / "shared.log")
    assert proposals(tmp_path / "fresh.log") == first  # sampler.seed: a new search is reproducible
    assert proposals(tmp_path / "shared.log") != first  # the joining worker explores elsewhere


def test_space_errors_name_file_and_key(tmp_path):
    bad = dict(SPACE, space={**SPACE["space"], "width": [64]})
    path = _write(tmp_path / "bad.yaml", bad)
    with pytest.raises(ConfigError, match=r"bad.yaml.*'space.width'.*upsample, upsample_refine, time_embedder"):
        load_space(path)
    bad = dict(SPACE, objectives=[{"name": "fid"}, {"name": "gflops"}])
    with pytest.raises(ConfigError, match=r"'objectives\[0\].name'.*fd_fmnist_proxy, gflops"):
        load_space(_write(tmp_path / "bad2.yaml", bad))
    assert load_space(ROOT / "experiments" / "search_space.yaml").budget["max_gflops"] > 0


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path
