"""Multi-objective architecture search with Optuna: quality against GFLOPs, under a GFLOPs budget.

A search space YAML names the registry choices to explore (upsample, time embedder and its layers n,
class tokens m, refine depth k, hierarchy, width, depth), the run settings of one scale, the objectives
and a budget. Each trial:

1. turns its parameters into a model config (invalid combinations, e.g. k >= depth, are refused);
2. counts GFLOPs analytically on the meta device; over budget -> pruned before any training,
   marked ``infeasible`` in the trial's user attributes;
3. runs the ordinary sweep pipeline (count, train, sample, evaluate) in ``RESULTS/<name>/<scale>/<run_id>``,
   so a trial leaves the same record as a sweep run and resumes the same way;
4. returns (quality metric, GFLOPs).

Pruning: Optuna's `Trial.report` / `should_prune` raise NotImplementedError for multi-objective
studies (optuna 5). The training contract's ``on_validation(step, val_loss)`` hook is used instead with
one documented rule, the median rule: a trial is pruned at a validation step (after ``warmup_steps``)
when its validation loss is above the median of the completed trials' validation losses at the same
step, once ``min_trials`` completed trials have one. Validation curves live in the trials' user
attributes, so the rule works across workers sharing a storage.

Failures: a trial whose phase fails (`PhaseError`) or runs out of memory is marked failed, its user
attributes ``failed`` ("phase failed", "out of memory", "metric missing") and ``error`` (the message) saying
why; the search goes on. Any other error stops the search.

Seeding: ``sampler.seed`` makes a search started on an empty study reproducible. A worker joining a study
that already has trials (a second worker, or a resumed search) draws from a seed mixed with the trial count
and its process id: with the plain seed it would propose the same parameters the first worker already tried.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpdit_bench import plugins as user_plugins
from mpdit_bench.config import ConfigError, ModelConfig, load_yaml
from mpdit_bench.models import get_preset
from mpdit_bench.sweeps.cpu_scale import CPU_GEOMETRY
from mpdit_bench.sweeps.expand import run_spec
from mpdit_bench.sweeps.runspec import RunSpec
from mpdit_bench.sweeps.settings import ScaleSettings, check_settings, parse_scale
from mpdit_bench.validation import require as _need

SPACE_KEYS = ("upsample", "upsample_refine", "time_embedder", "time_embedder_layers", "class_tokens", "refine_depth",
              "hierarchy", "hidden_size", "depth")
COUNT_OBJECTIVES = ("gflops", "gflops_paper_convention", "params")
TOP_KEYS = ("name", "description", "scale", "base", "settings", "space", "head_dim", "objectives", "budget",
            "sampler", "pruning", "plugins")


@dataclass
class SearchSpace:
    name: str
    path: str
    scale: str
    model: str
    settings: ScaleSettings
    space: dict[str, Any]
    head_dim: int
    objectives: list[dict[str, str]]
    budget: dict[str, float]
    sampler: dict[str, Any]
    pruning: dict[str, Any]
    plugins: list[str] = field(default_factory=list)  # every trial's run config keeps them

    @property
    def objective_names(self) -> list[str]:
        return [o["name"] for o in self.objectives]


def load_space(path: str | Path, plugins: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """The search space of a YAML file; ``plugins`` (the command's ``--plugin``) join the file's."""
    source = str(path)
    raw = load_yaml(path)
    for key in raw:
        _need(key in TOP_KEYS, key, raw[key], "one of " + ", ".join(TOP_KEYS), source)
    plugin_list = user_plugins.from_file_and_flags(raw.get("plugins"), plugins, source)
    scale = raw.get("scale", "cpu")
    _need(scale in ("cpu", "paper"), "scale", scale, "cpu or paper", source)
    settings = parse_scale(raw.get("settings", {}), "settings", source)
    check_settings(settings.nproc, settings.train, settings.sample, settings.eval, "settings", source)
    model = (raw.get("base") or {}).get("model", "MPDiT-B")
    try:
        get_preset(model)
    except ConfigError as err:
        raise ConfigError("base.model", model, err.allowed, source) from None
    space = raw.get("space")
    _need(isinstance(space, dict) and space, "space", space, "a mapping of " + ", ".join(SPACE_KEYS), source)
    for key, dom in space.items():
        _need(key in SPACE_KEYS, f"space.{key}", dom, "one of " + ", ".join(SPACE_KEYS), source)
        ok = (isinstance(dom, list) and dom) or (isinstance(dom, dict) and {"low", "high"} <= set(dom)
                                                 and set(dom) <= {"low", "high", "step"})
        _need(bool(ok), f"space.{key}", dom, "a non-empty list of choices or {low: int, high: int[, step: int]}",
              source)
    allowed = list(settings.eval["metrics"]) + list(COUNT_OBJECTIVES)
    objectives = raw.get("objectives") or []
    _need(isinstance(objectives, list) and len(objectives) >= 2, "objectives", objectives,
          "a list of at least two {name, direction} (quality metric and GFLOPs)", source)
    for i, obj in enumerate(objectives):
        _need(isinstance(obj, dict) and obj.get("name") in allowed, f"objectives[{i}].name",
              obj.get("name") if isinstance(obj, dict) else obj, "one of " + ", ".join(allowed), source)
        _need(obj.get("direction", "minimize") in ("minimize", "maximize"), f"objectives[{i}].direction",
              obj.get("direction"), "minimize or maximize", source)
    budget = raw.get("budget") or {}
    for key, value in budget.items():
        _need(key in ("max_gflops", "max_gflops_paper_convention", "max_params_m"), f"budget.{key}", value,
              "max_gflops, max_gflops_paper_convention, max_params_m", source)
        _need(isinstance(value, (int, float)) and value > 0, f"budget.{key}", value, "a number > 0", source)
    sampler = raw.get("sampler") or {"name": "nsga2"}
    _need(sampler.get("name") in ("nsga2", "tpe"), "sampler.name", sampler.get("name"), "nsga2 or tpe", source)
    pruning = {"rule": "median", "warmup_steps": 0, "min_trials": 2, **(raw.get("pruning") or {})}
    _need(pruning["rule"] in ("median", "none"), "pruning.rule", pruning["rule"], "median or none", source)
    name = raw.get("name")
    _need(isinstance(name, str) and name.replace("_", "").replace("-", "").isalnum(), "name", name,
          "a name of letters, digits, '-' and '_'", source)
    spec = SearchSpace(name, source, scale, model, settings, space, int(raw.get("head_dim", 32 if scale == "cpu"
                       else 64)), [{"direction": "minimize", **o} for o in objectives], budget, sampler, pruning,
                       plugin_list)
    trial_spec({}, spec)  # the base model with the settings: what the engine would refuse, refused now
    return spec


# ---- parameters -> model config ---------------------------------------------------------------------
def suggest(trial, space: dict[str, Any]) -> dict[str, Any]:
    params = {}
    for key, dom in space.items():
        if isinstance(dom, list):
            choices = [",".join(map(str, c)) if isinstance(c, list) else c for c in dom]  # optuna: primitives
            params[key] = trial.suggest_categorical(key, choices)
        else:
            params[key] = trial.suggest_int(key, dom["low"], dom["high"], step=dom.get("step", 1))
    return params


def overrides_from_params(params: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """Model overrides for one trial. Depth N and refine depth k: the finest level gets k blocks, the
    coarser levels share the other N - k evenly (the coarsest takes the remainder)."""
    over: dict[str, Any] = {k: params[k] for k in ("upsample", "upsample_refine", "time_embedder",
                                                    "time_embedder_layers", "class_tokens", "hidden_size")
                            if k in params}
    if "hidden_size" in params:
        over["num_heads"] = max(1, params["hidden_size"] // space.head_dim)
    preset = get_preset(space.model).config
    patches = [int(p) for p in str(params.get("hierarchy", ",".join(map(str, preset.patch_sizes)))).split(",")]
    depth = params.get("depth", preset.depth)
    k = params.get("refine_depth", preset.depths[-1])
    if len(patches) == 1:
        depths = [depth]
    else:
        if not 1 <= k < depth:
            raise ConfigError("refine_depth", k, f"an integer in [1, {depth - 1}] for depth {depth}", space.path)
        coarse = depth - k
        levels = len(patches) - 1
        if coarse < levels:
            raise ConfigError("depth", depth, f">= k + {levels} for {len(patches)} levels", space.path)
        depths = [coarse // levels + (1 if i < coarse % levels else 0) for i in range(levels)] + [k]
    over.update(patch_sizes=patches, depths=depths)
    if space.scale == "cpu":
        over.update(CPU_GEOMETRY)
    return over


def trial_spec(params: dict[str, Any], space: SearchSpace) -> tuple[RunSpec, ModelConfig]:
    """(RunSpec, model config) for a trial's parameters; ConfigError when the combination is invalid. The
    width and depth are the run's own (no CPU rule), so the config is also the run's full config."""
    from mpdit_bench.models import model_config

    s = space.settings
    cfg = model_config(space.model, s.resolution, **overrides_from_params(params, space))
    spec = run_spec(experiment=space.name, scale=space.scale, label=" ".join(f"{k}={v}" for k, v in params.items()),
                    model=space.model, model_config=cfg, full_config=cfg, resolution=s.resolution,
                    nproc=int(s.nproc), data=s.data, train=s.train, sample=s.sample, eval=s.eval, slurm=s.slurm,
                    axes={f"model_overrides.{k}": v for k, v in params.items()}, source=space.path,
                    plugins=space.plugins)
    return spec, cfg


def over_budget(counts: dict[str, float], budget: dict[str, float]) -> str | None:
    checks = (("max_gflops", counts["gflops"]), ("max_gflops_paper_convention", counts["gflops_paper_convention"]),
              ("max_params_m", counts["params"] / 1e6))
    for key, value in checks:
        if key in budget and value > budget[key]:
            return f"{key.removeprefix('max_')} = {value:.4g} > budget {budget[key]}"
    return None


# ---- pruning ----------------------------------------------------------------------------------------
def median_rule(study, trial, rule: dict[str, Any]):
    """on_validation hook implementing the documented median rule (see the module docstring)."""
    import optuna

    curve: dict[str, float] = {}

    def hook(step: int, val_loss: float) -> None:
        curve[str(step)] = float(val_loss)
        trial.set_user_attr("val_curve", curve)
        if rule["rule"] == "none" or step < rule["warmup_steps"]:
            return
        others = [t.user_attrs["val_curve"][str(step)] for t in study.get_trials(deepcopy=False)
                  if t.state == optuna.trial.TrialState.COMPLETE and str(step) in t.user_attrs.get("val_curve", {})]
        if len(others) >= rule["min_trials"] and val_loss > statistics.median(others):
            trial.set_user_attr("pruned_at", {"step": step, "val_loss": val_loss,
                                              "median": statistics.median(others)})
            raise optuna.TrialPruned(f"val_loss {val_loss:.4g} at step {step} above the median of {len(others)}")

    return hook


# ---- the study -----------------------------------------------------------------------------------------
def make_storage(storage: str | None, space: SearchSpace, results_dir: Path):
    """SQLite in the results folder by default; an RDB URL as given; a path ending .log/.journal: journal file."""
    import optuna

    if storage is None:
        results_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(results_dir / f'{space.name}.db').resolve()}"
    if "://" not in storage:
        from optuna.storages.journal import JournalFileBackend

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(storage)))
    return storage


def worker_seed(seed: int | None, trials_so_far: int) -> int | None:
    """The sampler seed of a worker that finds ``trials_so_far`` trials in the study (module docstring)."""
    if seed is None or trials_so_far == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{trials_so_far}:{os.getpid()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def create_study(space: SearchSpace, storage: str | None, results_dir: Path):
    import optuna

    study = optuna.create_study(study_name=space.name, storage=make_storage(storage, space, results_dir),
                                directions=[o["direction"] for o in space.objectives], load_if_exists=True)
    seed = worker_seed(space.sampler.get("seed"), len(study.get_trials(deepcopy=False)))
    if space.sampler["name"] == "nsga2":
        study.sampler = optuna.samplers.NSGAIISampler(population_size=space.sampler.get("population_size", 8),
                                                      seed=seed)
    else:
        study.sampler = optuna.samplers.TPESampler(seed=seed,
                                                   n_startup_trials=space.sampler.get("n_startup_trials", 5))
    return study


# ---- failed trials -------------------------------------------------------------------------------------
class TrialFailed(Exception):
    """A trial whose run failed (a phase failed, or ran out of memory): the study marks it failed and
    goes on. The reason and the message are in the trial's user attributes ``failed`` and ``error``."""


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA out-of-memory error, raised in this process or reported by a phase's command."""
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or (isinstance(err, RuntimeError)
                                                          and "out of memory" in str(err))


def failed_trial(trial, reason: str, message: str) -> TrialFailed:
    trial.set_user_attr("failed", reason)
    trial.set_user_attr("error", message[-4000:])
    return TrialFailed(f"trial {trial.number}: {reason}: {message}")


def run_trial(spec, run_dir: Path, pipeline: Any, trial, on_validation) -> None:
    """Run the trial's phases; a failed phase or an out-of-memory error becomes `TrialFailed`, any other
    error propagates (a bug of the suite must stop the search, not hide in a failed trial)."""
    from mpdit_bench.sweeps.pipeline import PhaseError
    from mpdit_bench.sweeps.runner import execute_run

    try:
        execute_run(spec, run_dir, pipeline, on_validation=on_validation)
    except Exception as err:
        if is_out_of_memory(err):
            raise failed_trial(trial, "out of memory", f"{type(err).__name__}: {err}") from err
        if isinstance(err, PhaseError):
            raise failed_trial(trial, "phase failed", str(err)) from err
        raise


def make_objective(space: SearchSpace, study, results_dir: Path, pipeline: Any):
    import optuna

    from mpdit_bench.counting import analytic_counts
    from mpdit_bench.sweeps.runner import run_dir_of
    from mpdit_bench.sweeps.state import RECORD, claim, is_finished, read_json
    from mpdit_bench.sweeps.records import training_log

    def objective(trial) -> list[float]:
        params = suggest(trial, space.space)
        try:
            spec, cfg = trial_spec(params, space)
        except ConfigError as err:
            trial.set_user_attr("infeasible", str(err))
            raise optuna.TrialPruned(f"invalid combination: {err}") from None
        counts = analytic_counts(cfg)
        for key, value in counts.items():
            trial.set_user_attr(key, value)
        reason = over_budget(counts, space.budget)
        if reason:  # never trained
            trial.set_user_attr("infeasible", reason)
            raise optuna.TrialPruned(f"over the GFLOPs budget: {reason}")
        trial.set_user_attr("run_id", spec.run_id)
        run_dir = run_dir_of(results_dir, spec)
        while not is_finished(run_dir):
            with claim(run_dir, f"trial {trial.number}") as mine:
                if mine and not is_finished(run_dir):
                    run_trial(spec, run_dir, pipeline, trial, median_rule(study, trial, space.pruning))
                    break
            time.sleep(5)  # the same config is being trained by another worker: reuse its record
        record = read_json(run_dir / RECORD)
        # the full curve from the record (also when an identical config's record was reused)
        trial.set_user_attr("val_curve", {str(int(r["step"])): r["val_loss"] for r in training_log(record)
                                          if r.get("step") is not None and r.get("val_loss") is not None})
        values = []
        for obj in space.objectives:
            value = counts[obj["name"]] if obj["name"] in COUNT_OBJECTIVES else record["metrics"].get(obj["name"])
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise failed_trial(trial, "metric missing", f"{obj['name']!r} is not in the evaluation's metrics")
            values.append(float(value))
        return values

    return objective


def run_search(space: SearchSpace, trials: int, storage: str | None = None, results_dir: str | Path = "results",
               pipeline: Any | None = None):
    """Run ``trials`` trials in this process (more workers: same storage, same command)."""
    from mpdit_bench.sweeps.pipeline import Pipeline

    results_dir = Path(results_dir)
    study = create_study(space, storage, results_dir)
    objective = make_objective(space, study, results_dir, pipeline or Pipeline())
    study.optimize(objective, n_trials=trials, catch=(TrialFailed,), gc_after_trial=True)
    return study
