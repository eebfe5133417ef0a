"""Experiment YAML: a base run config, one section per scale, and the axes that vary.

    name: ablation_k
    paper_table: mpdit/4                    # the table it rebuilds (mpdit_bench.paper); each run names its row
    base: {model: MPDiT-B, model_overrides: {}}
    scales:
      paper: {resolution: 256, nproc: 8, data: {...}, train: {...}, sample: {...}, eval: {...}}
      cpu:   {nproc: 1, data: {name: fashion-mnist}, train: {...}, sample: {...}, eval: {...}}
    axes:                                   # blocks, concatenated; each a grid (product) or a list
      - grid: {model: [MPDiT-B, MPDiT-XL], model_overrides.refine_depth: [4, 6, 8]}
      - variants: [{model: DiT-B/2+shared+tokens+fno, label: "isotropic"}]
    budget: {reference: isotropic}          # optional: equal training compute (see `apply_budget`)
    seeds: 3                                # optional: replicates over training seeds (see `replicate`)
    reference: isotropic                    # optional: the run every other run is compared against

A variant / grid point is a dict of overrides with dotted keys (``train.lr``) or nested dicts; keys under
``cpu`` / ``paper`` apply only at that scale; ``paper_row: mpdit/4/mpdit-b-k4`` names the table row the run
rebuilds. Every run resolves to a `RunSpec` with a stable id.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mpdit_bench import paper as published
from mpdit_bench.config import RUN_ID_GENERATION, ConfigError, ModelConfig, identity_values, load_yaml
from mpdit_bench.models import get_preset, model_config
from mpdit_bench.validation import Key, check_section, is_int
from mpdit_bench.validation import require as _need

SCALES = ("paper", "cpu")
TOP_KEYS = ("name", "description", "paper_table", "base", "scales", "axes", "budget", "seeds", "reference")
SCALE_KEYS = ("resolution", "nproc", "model_overrides", "data", "train", "sample", "eval", "slurm", "seeds", "workers")
VARIANT_ROOTS = ("label", "model", "model_overrides", "resolution", "nproc", "data", "train", "sample", "eval",
                 "group", "paper_row", "seeds")
METRICS = ("fid", "sfid", "is", "precision", "recall", "kid", "fd_fmnist_proxy", "kid_fmnist_proxy",
           "precision_fmnist_proxy", "recall_fmnist_proxy", "class_accuracy_fmnist_proxy")
CPU_GEOMETRY = {"in_channels": 1, "num_classes": 10, "input_size": 32}  # Fashion-MNIST padded to 32x32
SWEEP_SAMPLE_KEYS = ("num", "device")  # the sample phase's own flags, not sampling defaults of the run
EVAL_KEYS: dict[str, Key] = {
    "ref": Key(None, lambda v: isinstance(v, str), "a reference path or name (string)"),
    "metrics": Key(None, lambda v: isinstance(v, list) and bool(v) and all(x in METRICS for x in v),
                   "a non-empty list from " + ", ".join(METRICS)),
    "primary": Key(None, lambda v: v in METRICS, "one of eval.metrics"),
    "device": Key(None, lambda v: isinstance(v, str), "cpu, cuda, cuda:1, ..."),
    "batch_size": Key(None, lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "bootstrap": Key(None, lambda v: is_int(v) and v >= 0 and v != 1,
                     "0 (no intervals) or a number of bootstrap replicates >= 2"),
    "heldout": Key(None, lambda v: isinstance(v, bool), "true or false (the held-out flow-matching loss on the fixed grid)"),
}


# ---- the one CPU scale-down rule ------------------------------------------------------------------
def cpu_scaled(cfg: ModelConfig) -> ModelConfig:
    """The CPU-scale model of a full-size config (docs/SWEEPS.md, "CPU scale rule").

    Width / 8 rounded down to a multiple of 32 (at least 64), head width 32, every level's block count
    halved (rounded up), and the Fashion-MNIST geometry: 1 channel, 10 classes, 32x32 input. The token
    grids stay those of a 256 px latent (p=4: 8x8, p=2: 16x16), so the multi-patch trade-off is kept.
    """
    hidden = max(64, (cfg.hidden_size // 8) // 32 * 32)
    return cfg.replace(source="cpu scale rule", hidden_size=hidden, num_heads=hidden // 32,
                       depths=[math.ceil(d / 2) for d in cfg.depths], **CPU_GEOMETRY)


# ---- the resolved run ----------------------------------------------------------------------------
@dataclass
class RunSpec:
    """One run of an experiment at one scale, fully resolved."""

    experiment: str
    scale: str
    label: str
    model: str                      # preset name
    model_overrides: dict[str, Any]  # resolved config minus the preset (written to config.yaml)
    model_config: dict[str, Any]     # the config actually trained
    full_config: dict[str, Any]      # the unscaled config (paper's architecture), for published figures
    resolution: int
    nproc: int
    data: dict[str, Any]
    train: dict[str, Any]
    sample: dict[str, Any]
    eval: dict[str, Any]
    slurm: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, Any] = field(default_factory=dict)  # the values this run set (for tables)
    paper_table: str | None = None   # the paper table this run's experiment rebuilds (not in the id)
    run_id: str = ""
    group: str | None = None         # budget / reference group: runs matched to one reference run (not in the id)
    paper_row: str | None = None     # the table row it rebuilds, PAPER/TABLE/ROW (not in the id)
    seed: int = 0                    # training seed (= train.seed, so in the id; not in the label)
    smoke: bool = False              # a single-seed run of a replicated experiment: no verdict of its own

    def run_config(self) -> dict[str, Any]:
        """The training contract's run config (docs/CONTRACTS.md). ``sample.num`` and ``sample.device`` are
        the sweep's own keys (how many samples the sample phase draws, and where), not sampling defaults."""
        sampling_defaults = {k: v for k, v in self.sample.items() if k not in SWEEP_SAMPLE_KEYS}
        return {"model": self.model, "model_overrides": self.model_overrides, "model_config": self.model_config,
                "data": self.data, "train": self.train, "sample": sampling_defaults}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        return cls(**d)


def run_id(spec: RunSpec) -> str:
    """Stable id: hash of everything that changes what the run computes, and the scale."""
    keyed = {k: getattr(spec, k) for k in ("scale", "model", "model_config", "resolution", "nproc", "data",
                                           "train", "sample", "eval")}
    keyed["model_config"] = identity_values(spec.model_config, RUN_ID_GENERATION)
    blob = json.dumps(keyed, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class Experiment:
    name: str
    path: str
    description: str
    paper_table: str | None
    raw: dict[str, Any]

    def runs(self, scale: str, seeds: int | None = None) -> list[RunSpec]:
        return expand(self, scale, seeds)

    def workers(self, scale: str) -> int:
        """Local workers a sweep at ``scale`` starts unless ``sweep --workers`` says otherwise (default 1)."""
        return int(self.raw["scales"].get(scale, {}).get("workers", 1))


# ---- loading and validation ----------------------------------------------------------------------
def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; every run of both scales is resolved once to check it."""
    source = str(path)
    raw = load_yaml(path)
    for key in raw:
        _need(key in TOP_KEYS, key, raw[key], "one of the top-level keys " + ", ".join(TOP_KEYS), source)
    _need(isinstance(raw.get("name"), str) and raw["name"].replace("_", "").replace("-", "").isalnum(),
          "name", raw.get("name"), "a name of letters, digits, '-' and '_'", source)
    base = raw.get("base", {})
    _need(isinstance(base, dict) and isinstance(base.get("model"), str), "base.model", base.get("model")
          if isinstance(base, dict) else base, "a preset name from `mpdit-bench models`", source)
    scales = raw.get("scales")
    _need(isinstance(scales, dict) and scales and set(scales) <= set(SCALES), "scales",
          None if not isinstance(scales, dict) else list(scales), "a mapping with sections " + " and ".join(SCALES),
          source)
    for scale, section in scales.items():
        _check_scale(section, f"scales.{scale}", source)
    axes = raw.get("axes", [])
    _need(isinstance(axes, list), "axes", axes, "a list of blocks, each {grid: {...}} or {variants: [...]}", source)
    for i, block in enumerate(axes):
        _need(isinstance(block, dict) and len(block) == 1 and next(iter(block)) in ("grid", "variants"),
              f"axes[{i}]", block, "{grid: {key: [values]}} or {variants: [{overrides}, ...]}", source)
    if "budget" in raw:
        _budget_references(raw["budget"], source)
    if raw.get("paper_table") is not None:
        _lookup(lambda: published.table(str(raw["paper_table"])), "paper_table", raw["paper_table"], source)
    if "seeds" in raw:
        _seed_list(raw["seeds"], "seeds", source)
    if "reference" in raw:
        _references(raw["reference"], "reference", source)
    exp = Experiment(raw["name"], source, raw.get("description", ""), raw.get("paper_table"), raw)
    for scale in scales:
        expand(exp, scale)  # resolves every run: bad overrides fail here, before any compute
    return exp


def _check_scale(section: Any, where: str, source: str) -> None:
    _need(isinstance(section, dict), where, section, "a mapping with keys " + ", ".join(SCALE_KEYS), source)
    for key, value in section.items():
        _need(key in SCALE_KEYS, f"{where}.{key}", value, "one of " + ", ".join(SCALE_KEYS), source)
        if key in ("model_overrides", "data", "train", "sample", "eval", "slurm"):
            _need(isinstance(value, dict), f"{where}.{key}", value, "a mapping", source)
        if key == "workers":
            _need(is_int(value) and value >= 1, f"{where}.workers", value,
                  "a number of local worker processes >= 1", source)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys: {train: {lr: 1}} -> {"train.lr": 1}."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _points(raw: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Every grid point / variant as a flat dict of dotted overrides; no axes = one run of the base."""
    points: list[dict[str, Any]] = []
    for i, block in enumerate(raw.get("axes", [])):
        kind, body = next(iter(block.items()))
        if kind == "grid":
            _need(isinstance(body, dict) and body and all(isinstance(v, list) and v for v in body.values()),
                  f"axes[{i}].grid", body, "a mapping of dotted keys to non-empty lists of values", source)
            keys = list(body)
            points += [dict(zip(keys, combo)) for combo in itertools.product(*body.values())]
        else:
            _need(isinstance(body, list) and all(isinstance(v, dict) for v in body), f"axes[{i}].variants",
                  body, "a list of mappings of overrides", source)
            points += [_flatten(v) for v in body]
    return points or [{}]


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        target = target.setdefault(p, {})
    target[leaf] = copy.deepcopy(value)


def expand(exp: Experiment, scale: str, seeds: int | None = None) -> list[RunSpec]:
    """All runs of ``exp`` at ``scale``, in file order, duplicates (same id) dropped. ``seeds`` (the
    sweep's ``--seeds N``) replicates every run over N training seeds, overriding the file's ``seeds``."""
    raw, source = exp.raw, exp.path
    if scale not in raw["scales"]:
        raise ConfigError("--scale", scale, "a scale this experiment defines: " + ", ".join(raw["scales"]), source)
    points = _points(raw, source)
    specs = [_resolve(exp, scale, point) for point in points]
    if "budget" in raw:
        apply_budget(specs, _budget_references(raw["budget"], source), [_sets_steps(p, scale) for p in points],
                     source)
    elif not isinstance(raw.get("reference"), dict):
        for spec in specs:
            _need(spec.group is None, "group", spec.group, "no group: groups need a top-level "
                  "budget: {reference: {GROUP: LABEL, ...}} or reference: {GROUP: LABEL, ...}", source)
    if "reference" in raw:
        check_references(specs, _references(raw["reference"], "reference", source), "reference", source)
    replicated = [_seeds_of(raw, scale, point, seeds, source) for point in points]
    most = max(len(s) if isinstance(s, list) else s for s in replicated)
    specs = [r for spec, seed_list in zip(specs, replicated) for r in replicate(spec, seed_list, most)]
    runs, seen = [], set()
    for spec in specs:
        if spec.run_id not in seen:
            seen.add(spec.run_id)
            runs.append(spec)
    return runs


def _resolve(exp: Experiment, scale: str, point: dict[str, Any]) -> RunSpec:
    raw, source = exp.raw, exp.path
    section = copy.deepcopy(raw["scales"][scale])
    merged: dict[str, Any] = {"model": raw["base"]["model"],
                              "model_overrides": dict(raw["base"].get("model_overrides") or {}),
                              "resolution": section.get("resolution", 256), "nproc": section.get("nproc", 1),
                              "data": section.get("data", {}), "train": section.get("train", {}),
                              "sample": section.get("sample", {}), "eval": section.get("eval", {})}
    post_rule = dict(section.get("model_overrides") or {})  # scale-specific: applied after the CPU rule
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
        if root not in ("label", "group", "paper_row") and not scale_only:  # scale-only settings are not what the experiment varies
            axes[key] = value

    model = merged["model"]
    try:
        preset = get_preset(model)
    except ConfigError as err:
        raise ConfigError(err.key, err.value, err.allowed, source) from None
    _need(merged["resolution"] in (256, 512), "resolution", merged["resolution"], "256 or 512 (pixels)", source)
    full = _model(model, merged["resolution"], merged["model_overrides"], source)
    cfg = cpu_scaled(full) if scale == "cpu" else full
    if post_rule:
        cfg = _checked(lambda: cfg.replace(source=source, **post_rule), f"scales.{scale}.model_overrides", source)
    _check_settings(merged, scale, source)
    preset_dict = preset.config.to_dict()
    overrides = {k: v for k, v in cfg.to_dict().items() if preset_dict[k] != v and k != "refine_depth"}
    train = _steps_from_epochs(merged["train"], source)
    label = merged.get("label") or _auto_label(preset.name, axes)
    group = merged.get("group")
    _need(group is None or isinstance(group, str), "group", group, "a group name (string) of budget.reference",
          source)
    spec = RunSpec(exp.name, scale, str(label), preset.name, overrides, cfg.to_dict(), full.to_dict(),
                   merged["resolution"] if scale == "paper" else 32 * 8, int(merged["nproc"]), merged["data"], train,
                   merged["sample"], merged["eval"], section.get("slurm", {}), axes, exp.paper_table,
                   group=group, seed=int(train.get("seed", 0)))
    spec.paper_row = _paper_row(merged.get("paper_row"), exp.paper_table, full, scale, source)
    spec.run_id = run_id(spec)
    check_run(spec, source)
    return spec


def _paper_row(ref: Any, paper_table: str | None, full: ModelConfig, scale: str, source: str) -> str | None:
    """The row a run rebuilds: a row of the experiment's paper table that the suite builds, whose
    architecture is the run's (at cpu scale the resolution is the CPU geometry's, so it is not compared)."""
    if ref is None:
        return None
    row = _lookup(lambda: published.row(str(ref)), "paper_row", ref, source)
    if paper_table is not None:
        table = published.table(paper_table)
        _need(f"{row.paper}/{row.table}" == paper_table, "paper_row", ref,
              f"a row of the experiment's paper_table {paper_table}: "
              + ", ".join(r.ref for r in table.rows if r.model), source)
    _need(row.model is not None, "paper_row", ref, "a row the suite builds (it has a model); "
          + row.label + " is another method's, shown as published only", source)
    want = row.model_config().to_dict()
    have = full.to_dict()
    compared = [k for k in want if scale == "paper" or k != "input_size"]
    differ = sorted(k for k in compared if want[k] != have[k])
    _need(not differ, "paper_row", ref, "a row whose architecture is the run's: the run differs in "
          + ", ".join(f"{k} (run {have[k]!r}, row {want[k]!r})" for k in differ), source)
    return row.ref


# ---- replicates over training seeds -------------------------------------------------------------------
def _seed_list(value: Any, key: str, source: str) -> list[int] | None:
    """``seeds: N`` (N replicates: the run's train.seed, +1, ...) or ``seeds: [s0, s1, ...]``."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    ok = (is_int(value) and value >= 1) or (isinstance(value, list) and value and all(is_int(v) and v >= 0
                                                                                        for v in value)
                                             and len(set(value)) == len(value))
    _need(ok, key, value, "a number of replicates >= 1, or a list of distinct training seeds >= 0", source)
    return value if isinstance(value, list) else None


def _seeds_of(raw: dict[str, Any], scale: str, point: dict[str, Any], override: int | None,
              source: str) -> int | list[int]:
    """The seeds of one grid point: --seeds N, else the point's (scale-only first), the scale's, the file's, 1."""
    if override is not None:
        _need(isinstance(override, int) and override >= 1, "--seeds", override, "an integer >= 1", source)
        return override
    for key in (f"{scale}.seeds", "seeds"):
        if key in point:
            _seed_list(point[key], key, source)
            return point[key]
    for where, section in ((f"scales.{scale}.seeds", raw["scales"][scale]), ("seeds", raw)):
        if "seeds" in section:
            _seed_list(section["seeds"], where, source)
            return section["seeds"]
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


# ---- the reference of the comparisons -----------------------------------------------------------------
def _references(value: Any, key: str, source: str) -> dict[str | None, str]:
    """``reference: LABEL`` (one for every run) or ``reference: {GROUP: LABEL, ...}`` (runs name a group)."""
    if isinstance(value, str):
        return {None: value}
    _need(isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in value.items()),
          key, value, "a run label, or a mapping of group names to run labels", source)
    return dict(value)


def check_references(specs: list[RunSpec], references: dict[str | None, str], key: str, source: str) -> None:
    """Every run's group has a reference, and each reference label names exactly one configuration."""
    allowed = ("no group: reference is one label" if None in references
               else "a group of reference: " + ", ".join(map(str, references)))
    for spec in specs:
        _need(spec.group in references, "group", spec.group, allowed, source)
    for group, label in references.items():
        members = [s for s in specs if s.group == group]
        if members:
            found = {s.run_id for s in members if s.label == label}
            _need(len(found) == 1, key + ("" if group is None else f".{group}"), label,
                  "the label of exactly one run" + ("" if group is None else f" of group {group}") + ": "
                  + ", ".join(dict.fromkeys(s.label for s in members)), source)


def reference_label(exp: Experiment, spec: RunSpec) -> str | None:
    """The label of the run ``spec`` is compared against (None: the experiment names no reference)."""
    if "reference" not in exp.raw:
        return None
    return _references(exp.raw["reference"], "reference", exp.path).get(spec.group)


# ---- equal training compute (`budget`) -----------------------------------------------------------
def _budget_references(budget: Any, source: str) -> dict[str | None, str]:
    """``budget.reference`` as {group: label}; one label = the reference of every run (group None)."""
    _need(isinstance(budget, dict) and set(budget) == {"reference"}, "budget", budget,
          "{reference: LABEL} or {reference: {GROUP: LABEL, ...}}", source)
    ref = budget["reference"]
    if isinstance(ref, str):
        return {None: ref}
    _need(isinstance(ref, dict) and ref and all(isinstance(k, str) and isinstance(v, str) for k, v in ref.items()),
          "budget.reference", ref, "a run label, or a mapping of group names to run labels", source)
    return dict(ref)


def _sets_steps(point: dict[str, Any], scale: str) -> bool:
    """Whether a grid point / variant sets train.steps or train.epochs itself (at this scale)."""
    for key, value in point.items():
        root, _, rest = key.partition(".")
        if root in SCALES:
            if root != scale:
                continue
            key = rest
        if key in ("train.steps", "train.epochs") or (key == "train" and isinstance(value, dict)
                                                       and ({"steps", "epochs"} & set(value))):
            return True
    return False


def equal_compute_steps(reference_steps: int, reference_flops: float, run_flops: float) -> int:
    """Steps giving a run the reference's training compute at the same batch size."""
    if reference_steps < 1 or reference_flops <= 0 or run_flops <= 0:
        raise ConfigError("budget", (reference_steps, reference_flops, run_flops), "positive steps and FLOPs")
    return max(1, round(reference_steps * reference_flops / run_flops))


def training_flops(spec: RunSpec, source: str) -> float:
    """Training FLOPs per sample of the model this run trains (at its scale), for its stage mix."""
    import torch

    from mpdit_bench.counting import training_flops_per_sample
    from mpdit_bench.models import build_model

    cfg = ModelConfig.from_dict(spec.model_config, source)
    with torch.device("meta"):  # shapes only: no memory, no init
        model = build_model(cfg)
    return _checked(lambda: training_flops_per_sample(model, spec.train.get("stage_proportions")),
                    "train", source)


def apply_budget(specs: list[RunSpec], references: dict[str | None, str], sets_steps: list[bool],
                 source: str) -> None:
    """Equal training compute: in each group, the run labelled ``references[group]`` keeps its train.steps
    (the budget); every other run of the group gets the steps giving it the same training FLOPs at the same
    global batch: ``equal_compute_steps(ref_steps, F(ref), F(run))``, F = training FLOPs per sample
    of the resolved (scaled) model with the run's train.stage_proportions. Run ids are recomputed."""
    allowed = ("no group: budget.reference is one label; give it as {GROUP: LABEL, ...} to use groups"
               if None in references else "a group of budget.reference: " + ", ".join(map(str, references)))
    for spec in specs:
        _need(spec.group in references, "group", spec.group, allowed, source)
    flops: dict[str, float] = {}

    def f(spec: RunSpec) -> float:
        key = json.dumps([spec.model_config, spec.train.get("stage_proportions")], sort_keys=True)
        if key not in flops:
            flops[key] = training_flops(spec, source)
        return flops[key]

    for group, label in references.items():
        members = [(s, own) for s, own in zip(specs, sets_steps) if s.group == group]
        if not members:
            continue  # the group has no run at this scale
        where = "budget.reference" + ("" if group is None else f".{group}")
        refs = {s.run_id: s for s, _ in members if s.label == label}
        _need(len(refs) == 1, where, label, "the label of exactly one run" + ("" if group is None else
              f" of group {group}") + f" at scale {members[0][0].scale}: " + ", ".join(dict.fromkeys(s.label for s, _ in members)), source)
        ref = next(iter(refs.values()))
        for spec, own in members:
            if spec.label == label:
                continue
            _need(not own, f"{spec.label}: train.steps", spec.train.get("steps"), "not set: the budget gives "
                  f"train.steps to every run but the reference {label!r}", source)
            batch = ref.train["global_batch"]
            _need(spec.train["global_batch"] == batch, f"{spec.label}: train.global_batch",
                  spec.train["global_batch"], f"{batch}, the reference's: equal compute compares steps at one "
                  "batch size", source)
            steps = equal_compute_steps(ref.train["steps"], f(ref), f(spec))
            spec.train = {**spec.train, "steps": steps}
            spec.run_id = run_id(spec)


def _lookup(fn, key: str, value: Any, source: str):
    """A look-up in the published tables; its error re-worded for this file and key."""
    try:
        return fn()
    except ConfigError as err:
        raise ConfigError(key, value, err.allowed, source) from None


def _checked(fn, key: str, source: str):
    try:
        return fn()
    except ConfigError as err:
        raise ConfigError(f"{key}.{err.key}", err.value, err.allowed, source) from None


def _model(name: str, resolution: int, overrides: dict[str, Any], source: str) -> ModelConfig:
    return _checked(lambda: model_config(name, resolution, **overrides), "model_overrides", source)


def _check_settings(m: dict[str, Any], scale: str, source: str) -> None:
    """The sweep's own keys; everything the run config holds is checked by the engine (`check_run`)."""
    def positive_int(v: Any) -> bool:
        return is_int(v) and v > 0

    _need(positive_int(m["nproc"]), "nproc", m["nproc"], "a positive integer (processes for torchrun)", source)
    train, sample, ev = m["train"], m["sample"], m["eval"]
    for key in ("global_batch",):
        _need(positive_int(train.get(key)), f"scales.{scale}.train.{key}", train.get(key), "a positive integer",
              source)
    _need(("steps" in train) != ("epochs" in train), f"scales.{scale}.train.steps", train.get("steps"),
          "exactly one of train.steps (int) or train.epochs (number, with train.dataset_size)", source)
    _need(positive_int(sample.get("num")), "sample.num", sample.get("num"), "a positive integer", source)
    if "device" in sample:
        _need(sample["device"] in ("auto", "cpu", "cuda"), "sample.device", sample["device"], "auto, cpu, cuda",
              source)
    ev = check_section(ev, EVAL_KEYS, source, "eval", defaults=False)
    for key in ("metrics", "ref"):
        _need(key in ev, f"eval.{key}", None, EVAL_KEYS[key].allowed, source)
    check_source_spec(ev["ref"], "eval.ref", source)
    if "primary" in ev:
        _need(ev["primary"] in ev["metrics"], "eval.primary", ev["primary"],
              "one of eval.metrics: " + ", ".join(ev["metrics"]), source)


def check_source_spec(value: str, key: str, source: str) -> None:
    """An image source named in the file (a dataset name, an .npz, an image folder), checked in form
    without reading it; a path missing on this machine is refused only when the sweep opens it."""
    from mpdit_bench.evaluation.sources import SPEC_HELP, SourceError, check_spec

    try:
        check_spec(value)
    except SourceError as err:
        raise ConfigError(key, value, f"{SPEC_HELP}; here {err}", source) from None


def check_run(spec: RunSpec, source: str) -> None:
    """The training engine's own checks (data, train, sample, model) on the run config a run trains with,
    so that whatever `train` or `sample` would refuse is refused when the file is loaded."""
    from mpdit_bench.engine.run_config import validate_run_config

    validate_run_config(spec.run_config(), f"{source} (run {spec.label!r}, scale {spec.scale})")


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


_SHORT = {"model_overrides.refine_depth": "k", "model_overrides.class_tokens": "m",
          "model_overrides.upsample": "upsample", "model_overrides.time_embedder": "time",
          "model_overrides.time_embedder_layers": "n", "model_overrides.patch_sizes": "patches",
          "model_overrides.depths": "depths"}


def _auto_label(model: str, axes: dict[str, Any]) -> str:
    parts = [f"{_SHORT.get(k, k.split('.')[-1])}={v}" for k, v in axes.items() if k != "model"]
    return " ".join([model] + parts)


def primary_metric(spec: RunSpec) -> str:
    """The metric tables and plots lead with."""
    return spec.eval.get("primary") or spec.eval["metrics"][0]
