"""Expansion: an experiment's axes -> grid points / variants -> one resolved `RunSpec` per run.

A point is a flat dict of dotted overrides (``train.lr``, ``model_overrides.refine_depth``); keys under
``cpu`` / ``paper`` apply only at that scale. A point resolves on top of its scale's section: the model
(preset, overrides, the CPU rule, then the scale's own model overrides), the run settings, the label,
the paper row it rebuilds. Then the budget gives equal-compute steps, references are checked, and every
run is replicated over its training seeds.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import TYPE_CHECKING, Any

from mpdit_bench import paper as published
from mpdit_bench.config import RECIPE_KEYS, ConfigError, ModelConfig
from mpdit_bench.models import get_preset, model_config
from mpdit_bench.sweeps.budget import apply_budget, sets_steps
from mpdit_bench.sweeps.cpu_scale import cpu_scaled, run_resolution
from mpdit_bench.sweeps.references import check_references
from mpdit_bench.sweeps.runspec import SCALES, RunSpec, run_id
from mpdit_bench.sweeps.settings import check_run, check_settings, checked, looked_up, parse_seeds
from mpdit_bench.validation import flatten_keys
from mpdit_bench.validation import require as _need

if TYPE_CHECKING:
    from mpdit_bench.sweeps.experiment import Experiment

VARIANT_ROOTS = ("label", "model", "model_overrides", "resolution", "nproc", "data", "train", "sample", "eval",
                 "group", "paper_row", "seeds")
RESOLUTIONS = (256, 512)
_SHORT = {"model_overrides.refine_depth": "k", "model_overrides.class_tokens": "m",
          "model_overrides.upsample": "upsample", "model_overrides.time_embedder": "time",
          "model_overrides.time_embedder_layers": "n", "model_overrides.patch_sizes": "patches",
          "model_overrides.depths": "depths"}


# ---- axes -> points ----------------------------------------------------------------------------------
def parse_axes(axes: Any, source: str) -> list[dict[str, Any]]:
    """Every grid point / variant as a flat dict of dotted overrides; no axes = one run of the base."""
    _need(isinstance(axes, list), "axes", axes, "a list of blocks, each {grid: {...}} or {variants: [...]}", source)
    for i, block in enumerate(axes):
        _need(isinstance(block, dict) and len(block) == 1 and next(iter(block)) in ("grid", "variants"),
              f"axes[{i}]", block, "{grid: {key: [values]}} or {variants: [{overrides}, ...]}", source)
    points: list[dict[str, Any]] = []
    for i, block in enumerate(axes):
        kind, body = next(iter(block.items()))
        if kind == "grid":
            _need(isinstance(body, dict) and body and all(isinstance(v, list) and v for v in body.values()),
                  f"axes[{i}].grid", body, "a mapping of dotted keys to non-empty lists of values", source)
            keys = list(body)
            points += [dict(zip(keys, combo)) for combo in itertools.product(*body.values())]
        else:
            _need(isinstance(body, list) and all(isinstance(v, dict) for v in body), f"axes[{i}].variants",
                  body, "a list of mappings of overrides", source)
            points += [flatten_keys(v) for v in body]
    return points or [{}]



def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        target = target.setdefault(p, {})
    target[leaf] = copy.deepcopy(value)


# ---- points -> runs ----------------------------------------------------------------------------------
def expand(exp: Experiment, scale: str, seeds: int | None = None) -> list[RunSpec]:
    """All runs of ``exp`` at ``scale``, in file order, duplicates (same id) dropped. ``seeds`` (the
    sweep's ``--seeds N``) replicates every run over N training seeds, overriding the file's ``seeds``."""
    source = exp.path
    if scale not in exp.scales:
        raise ConfigError("--scale", scale, "a scale this experiment defines: " + ", ".join(exp.scales), source)
    specs = [resolve_point(exp, scale, point) for point in exp.points]
    if exp.budget is not None:
        apply_budget(specs, exp.budget, [sets_steps(p, scale) for p in exp.points], source)
    elif exp.reference is None or None in exp.reference:
        for spec in specs:
            _need(spec.group is None, "group", spec.group, "no group: groups need a top-level "
                  "budget: {reference: {GROUP: LABEL, ...}} or reference: {GROUP: LABEL, ...}", source)
    if exp.reference is not None:
        check_references(specs, exp.reference, "reference", source)
    replicated = [_seeds_of(exp, scale, point, seeds) for point in exp.points]
    most = max(len(s) if isinstance(s, list) else s for s in replicated)
    specs = [r for spec, seed_list in zip(specs, replicated) for r in replicate(spec, seed_list, most)]
    runs, seen = [], set()
    for spec in specs:
        if spec.run_id not in seen:
            seen.add(spec.run_id)
            runs.append(spec)
    return runs


def resolve_point(exp: Experiment, scale: str, point: dict[str, Any]) -> RunSpec:
    """One grid point / variant at ``scale``, resolved and checked (one seed: see `replicate`)."""
    source = exp.path
    section = copy.deepcopy(exp.scales[scale])
    merged: dict[str, Any] = {"model": exp.model, "model_overrides": dict(exp.model_overrides),
                              "resolution": section.resolution, "nproc": section.nproc, "data": section.data,
                              "train": section.train, "sample": section.sample, "eval": section.eval}
    post_rule = dict(section.model_overrides)  # scale-specific: applied after the CPU rule
    axes: dict[str, Any] = {}
    for key, value in point.items():
        root, _, rest = key.partition(".")
        scale_only = root in SCALES
        if scale_only:
            if root != scale:
                continue
            root, _, rest = rest.partition(".")
            key = f"{root}.{rest}" if rest else root
            if root == "model_overrides":
                post_rule.update({rest: value} if rest else value)
                continue
        _need(root in VARIANT_ROOTS, key, value, "keys under " + ", ".join(VARIANT_ROOTS + SCALES), source)
        if root == "seeds":
            continue  # replicates: expanded after resolving (`replicate`)
        if root == "model_overrides" and not rest:
            _need(isinstance(value, dict), key, value, "a mapping of model config keys", source)
            merged["model_overrides"].update(value)
        elif root in ("model", "label", "group", "resolution", "nproc", "paper_row"):
            merged[root] = value
        else:
            _set(merged, key, value)
        if root not in ("label", "group", "paper_row") and not scale_only:  # scale-only: not what it varies
            axes[key] = value

    preset = looked_up(lambda: get_preset(merged["model"]), "model", merged["model"], source)
    _need(merged["resolution"] in RESOLUTIONS, "resolution", merged["resolution"], "256 or 512 (pixels)", source)
    full = checked(lambda: model_config(merged["model"], merged["resolution"], **merged["model_overrides"]),
                   "model_overrides", source)
    cfg = cpu_scaled(full) if scale == "cpu" else full
    if post_rule:
        cfg = checked(lambda: cfg.replace(source=source, **post_rule), f"scales.{scale}.model_overrides", source)
    check_settings(merged["nproc"], merged["train"], merged["sample"], merged["eval"], scale, source)
    train = _steps_from_epochs(merged["train"], source)
    label = merged.get("label") or _auto_label(preset.name, axes)
    group = merged.get("group")
    _need(group is None or isinstance(group, str), "group", group, "a group name (string) of budget.reference",
          source)
    return run_spec(experiment=exp.name, scale=scale, label=str(label), model=merged["model"], model_config=cfg,
                    full_config=full, resolution=merged["resolution"], nproc=int(merged["nproc"]),
                    data=merged["data"], train=train, sample=merged["sample"], eval=merged["eval"],
                    slurm=section.slurm, axes=axes, paper_table=exp.paper_table, group=group,
                    paper_row=_paper_row(merged.get("paper_row"), exp.paper_table, full, scale, source),
                    source=source, plugins=exp.plugins)


def run_spec(*, experiment: str, scale: str, label: str, model: str, model_config: ModelConfig,
             full_config: ModelConfig, resolution: int, nproc: int, data: dict[str, Any], train: dict[str, Any],
             sample: dict[str, Any], eval: dict[str, Any], slurm: dict[str, Any], axes: dict[str, Any],
             source: str, paper_table: str | None = None, group: str | None = None,
             paper_row: str | None = None, plugins: list[str] | tuple[str, ...] = ()) -> RunSpec:
    """The run of one resolved model and its settings, with its id, checked as the engine checks it.
    Sweeps (`resolve_point`) and searches (`search.trial_spec`) make their runs here. ``model`` is the
    preset the config was built from; ``resolution`` the experiment's (a CPU run records CPU_RESOLUTION);
    ``plugins`` the modules its components come from (kept in its run config, not in its id)."""
    preset = get_preset(model)
    preset_values = preset.config.to_dict()
    overrides = {k: v for k, v in model_config.to_dict().items() if preset_values[k] != v and k != "refine_depth"}
    spec = RunSpec(experiment=experiment, scale=scale, label=label, model=preset.name, model_overrides=overrides,
                   model_config=model_config.to_dict(), full_config=full_config.to_dict(),
                   resolution=run_resolution(scale, resolution), nproc=nproc, data=data, train=train,
                   sample=sample, eval=eval, slurm=slurm, axes=axes, paper_table=paper_table, group=group,
                   paper_row=paper_row, seed=int(train.get("seed", 0)), plugins=list(plugins))
    spec.run_id = run_id(spec)
    check_run(spec, source)
    return spec


def _paper_row(ref: Any, paper_table: str | None, full: ModelConfig, scale: str, source: str) -> str | None:
    """The row a run rebuilds: a row of the experiment's paper table that the suite builds, whose
    architecture is the run's (at cpu scale the resolution is the CPU geometry's, so it is not compared; the
    recipe's conventions, such as the time embedder's input scale and the init, are not the architecture)."""
    if ref is None:
        return None
    row = looked_up(lambda: published.row(str(ref)), "paper_row", ref, source)
    if paper_table is not None:
        table = published.table(paper_table)
        _need(f"{row.paper}/{row.table}" == paper_table, "paper_row", ref,
              f"a row of the experiment's paper_table {paper_table}: "
              + ", ".join(r.ref for r in table.rows if r.model), source)
    _need(row.model is not None, "paper_row", ref, "a row the suite builds (it has a model); "
          + row.label + " is another method's, shown as published only", source)
    want = row.model_config().to_dict()
    have = full.to_dict()
    compared = [k for k in want if (scale == "paper" or k != "input_size") and k not in RECIPE_KEYS]
    differ = sorted(k for k in compared if want[k] != have[k])
    _need(not differ, "paper_row", ref, "a row whose architecture is the run's: the run differs in "
          + ", ".join(f"{k} (run {have[k]!r}, row {want[k]!r})" for k in differ), source)
    return row.ref


def _steps_from_epochs(train: dict[str, Any], source: str) -> dict[str, Any]:
    """The training contract counts steps: ``epochs`` and ``dataset_size`` become ``steps``."""
    if "epochs" not in train:
        return train
    train = dict(train)
    size = train.pop("dataset_size", None)
    _need(isinstance(size, int) and not isinstance(size, bool) and size > 0, "train.dataset_size", size,
          "a positive integer (images in the training set), needed with train.epochs", source)
    epochs = train.pop("epochs")
    _need(isinstance(epochs, (int, float)) and epochs > 0, "train.epochs", epochs, "a number > 0", source)
    train["steps"] = math.ceil(epochs * size / train["global_batch"])
    return train


def _auto_label(model: str, axes: dict[str, Any]) -> str:
    parts = [f"{_SHORT.get(k, k.split('.')[-1])}={v}" for k, v in axes.items() if k != "model"]
    return " ".join([model] + parts)


# ---- replicates over training seeds -------------------------------------------------------------------
def _seeds_of(exp: Experiment, scale: str, point: dict[str, Any], override: int | None) -> int | list[int]:
    """The seeds of one grid point: --seeds N, else the point's (scale-only first), the scale's, the file's, 1."""
    if override is not None:
        _need(isinstance(override, int) and override >= 1, "--seeds", override, "an integer >= 1", exp.path)
        return override
    for key in (f"{scale}.seeds", "seeds"):
        if key in point:
            return parse_seeds(point[key], key, exp.path)
    for seeds in (exp.scales[scale].seeds, exp.seeds):
        if seeds is not None:
            return seeds
    return 1


def replicate(spec: RunSpec, seeds: int | list[int], most: int) -> list[RunSpec]:
    """One run per training seed: train.seed (hence the run id) changes, the label and the sampling seed
    do not, so replicates of a configuration share their label and draw the same sampling noise. A
    configuration with fewer seeds than the experiment's most is marked ``smoke`` (shown as such)."""
    seed_list = seeds if isinstance(seeds, list) else [spec.seed + i for i in range(seeds)]
    out = []
    for seed in seed_list:
        rep = copy.deepcopy(spec)
        if seed != spec.seed:  # the first replicate is the unreplicated run itself, with its id
            rep.train = {**rep.train, "seed": seed}
        rep.seed, rep.smoke = seed, most > 1 and len(seed_list) == 1
        rep.run_id = run_id(rep)
        out.append(rep)
    return out
