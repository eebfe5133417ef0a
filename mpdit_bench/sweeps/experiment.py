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
    budget: {reference: isotropic}          # optional: equal training compute (sweeps/budget.py)
    seeds: 3                                # optional: replicates over training seeds (expand.replicate)
    reference: isotropic                    # optional: the run every other run is compared against
    plugins: [my_lab.parts, ./parts.py]     # optional: your own components (mpdit_bench/plugins.py)
    equivalence: {fd_fmnist_proxy: 0.5}     # optional: report "equivalent within ±delta" tests for these metrics

A variant / grid point is a dict of overrides with dotted keys (``train.lr``) or nested dicts; keys under
``cpu`` / ``paper`` apply only at that scale; ``paper_row: mpdit/4/mpdit-b-k4`` names the table row the run
rebuilds. The file is read once into an `Experiment`; every run resolves to a `RunSpec` with a stable id
(sweeps/expand.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpdit_bench import paper as published
from mpdit_bench import plugins as user_plugins
from mpdit_bench.config import load_yaml
from mpdit_bench.evaluation.metric_table import BY_NAME as METRIC_TABLE
from mpdit_bench.sweeps.budget import parse_budget
from mpdit_bench.sweeps.expand import expand, parse_axes
from mpdit_bench.sweeps.references import References, parse_references
from mpdit_bench.sweeps.runspec import SCALES, RunSpec
from mpdit_bench.sweeps.settings import ScaleSettings, looked_up, parse_scale, parse_seeds
from mpdit_bench.validation import require as _need

METRIC_NAMES = tuple(METRIC_TABLE)
TOP_KEYS = ("name", "description", "paper_table", "base", "scales", "axes", "budget", "seeds", "reference",
            "plugins", "equivalence")


@dataclass
class Experiment:
    """An experiment file, read and checked."""

    name: str
    path: str                           # the file: every error names it
    description: str
    paper_table: str | None             # PAPER/TABLE it rebuilds
    model: str                          # the base preset
    model_overrides: dict[str, Any]     # the base model overrides
    scales: dict[str, ScaleSettings]    # in file order
    points: list[dict[str, Any]]        # the axes: one dict of dotted overrides per grid point / variant
    seeds: int | list[int] | None = None
    budget: References | None = None    # equal training compute: group -> the reference run's label
    reference: References | None = None  # comparisons: group -> the reference run's label
    plugins: list[str] = field(default_factory=list)  # loaded before any run resolves; every run config keeps them
    equivalence: dict[str, float] = field(default_factory=dict)  # metric -> margin of its equivalence test

    def runs(self, scale: str, seeds: int | None = None) -> list[RunSpec]:
        return expand(self, scale, seeds)

    def reference_label(self, spec: RunSpec) -> str | None:
        """The label of the run ``spec`` is compared against (None: the experiment names no reference)."""
        return None if self.reference is None else self.reference.get(spec.group)

    def workers(self, scale: str) -> int:
        """Local workers a sweep at ``scale`` starts unless ``sweep --workers`` says otherwise (default 1)."""
        return self.scales[scale].workers if scale in self.scales else 1


def load_experiment(path: str | Path, plugins: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read and check an experiment file; every run of every scale is resolved once to check it, so bad
    overrides fail here, before any compute. ``plugins`` (the commands' ``--plugin``) join the file's."""
    exp = parse_experiment(load_yaml(path), str(path), plugins)
    for scale in exp.scales:
        expand(exp, scale)
    return exp


def parse_experiment(raw: dict[str, Any], source: str, plugins: list[str] | tuple[str, ...] = ()) -> Experiment:
    """The file's keys checked and typed (runs are not resolved: see `load_experiment`)."""
    for key in raw:
        _need(key in TOP_KEYS, key, raw[key], "one of the top-level keys " + ", ".join(TOP_KEYS), source)
    plugin_list = user_plugins.from_file_and_flags(raw.get("plugins"), plugins, source)
    _need(isinstance(raw.get("name"), str) and raw["name"].replace("_", "").replace("-", "").isalnum(),
          "name", raw.get("name"), "a name of letters, digits, '-' and '_'", source)
    base = raw.get("base", {})
    _need(isinstance(base, dict) and isinstance(base.get("model"), str), "base.model", base.get("model")
          if isinstance(base, dict) else base, "a preset name from `mpdit-bench models`", source)
    scales = raw.get("scales")
    _need(isinstance(scales, dict) and scales and set(scales) <= set(SCALES), "scales",
          None if not isinstance(scales, dict) else list(scales), "a mapping with sections " + " and ".join(SCALES),
          source)
    sections = {scale: parse_scale(section, f"scales.{scale}", source) for scale, section in scales.items()}
    points = parse_axes(raw.get("axes", []), source)
    budget = parse_budget(raw["budget"], source) if "budget" in raw else None
    paper_table = raw.get("paper_table")
    if paper_table is not None:
        looked_up(lambda: published.table(str(paper_table)), "paper_table", paper_table, source)
    seeds = parse_seeds(raw["seeds"], "seeds", source) if "seeds" in raw else None
    reference = parse_references(raw["reference"], "reference", source) if "reference" in raw else None
    equivalence = parse_equivalence(raw["equivalence"], source) if "equivalence" in raw else {}
    return Experiment(name=raw["name"], path=source, description=raw.get("description", ""),
                      paper_table=paper_table, model=base["model"],
                      model_overrides=dict(base.get("model_overrides") or {}), scales=sections, points=points,
                      seeds=seeds, budget=budget, reference=reference, plugins=plugin_list,
                      equivalence=equivalence)


def parse_equivalence(raw: Any, source: str) -> dict[str, float]:
    """``equivalence: {metric: delta}``: the margin within which a configuration counts as equivalent."""
    _need(isinstance(raw, dict) and bool(raw), "equivalence", raw, "a mapping {metric: margin > 0}", source)
    for metric, delta in raw.items():
        _need(metric in METRIC_NAMES, f"equivalence.{metric}", metric, "a metric: " + ", ".join(METRIC_NAMES), source)
        _need(isinstance(delta, (int, float)) and not isinstance(delta, bool) and delta > 0,
              f"equivalence.{metric}", delta, "a margin > 0 in the metric's units", source)
    return {metric: float(delta) for metric, delta in raw.items()}
