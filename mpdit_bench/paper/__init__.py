"""The published tables of both papers, as printed, loaded from the YAML files beside this module.

    >>> from mpdit_bench import paper
    >>> paper.row("mpdit/7/linear-mlp").values["params"]
    109.0

A row is addressed as ``PAPER/TABLE/ROW`` (``mpdit/4/mpdit-b-k4``): the paper (mpdit, ppflow), the table id
the paper prints (1-9 for MPDiT, ``sec7`` for its training-compute figures; main, ablation-adaptation,
ablation-design, flexidit for PPFlow) and the row's key. These files are the only place published numbers live;
``figures`` says which rows print the numbers of each model preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from mpdit_bench import models
from mpdit_bench.config import ConfigError

PAPERS = ("mpdit", "ppflow")
KINDS = ("params", "gflops", "metric", "recipe", "config", "text", "ratio", "fraction", "speedup",
         "relative_flops")
CONVENTIONS = ("true", "paper", "unknown")
ROW_KEYS = ("key", "label", "values", "recipe", "model", "own", "compute")


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str
    metric: str | None = None    # the run record's metric key (kind metric)
    guided: bool | None = None   # metric cells: only runs with (True) / without (False) guidance
    config: str | None = None    # kind config: the model config attribute
    unit: str | None = None


@dataclass(frozen=True)
class Row:
    paper: str
    table: str
    key: str
    label: str
    values: dict[str, Any]        # column key -> printed value (None = not printed)
    recipe: dict[str, Any]        # epochs, cfg, resolution, sampler, ... where printed (table defaults merged)
    model: dict[str, Any] | None  # {preset, overrides, resolution}: the suite's build of this row
    own: bool = False             # the paper's own run (MPDiT's or PPFlow's), not a cited method
    compute: dict[str, Any] = field(default_factory=dict)  # inputs of computed columns (ratio, fraction)
    # how the printed GFLOPs were counted: "true" (DiT's fvcore count, as cited rows report it), "paper" (the
    # MPDiT paper's convention, mpdit_bench.counting.measure.paper_convention_flops) or "unknown"
    gflops_convention: str = "true"

    @property
    def ref(self) -> str:
        return f"{self.paper}/{self.table}/{self.key}"

    def model_config(self):
        """The ModelConfig of this row's architecture (None for rows of methods the suite does not build)."""
        if self.model is None:
            return None
        return models.model_config(self.model["preset"], self.model.get("resolution", self.recipe.get("resolution")),
                            **self.model.get("overrides", {}))


@dataclass(frozen=True)
class Table:
    paper: str
    id: str
    printed_name: str             # "Table 4", "Sec. 7", "main results"
    title: str
    note: str | None
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]

    @property
    def ref(self) -> str:
        return f"{self.paper}/{self.id}"

    @property
    def name(self) -> str:
        """How the paper names it, e.g. "MPDiT Table 4", "PPFlow main results"."""
        return f"{'MPDiT' if self.paper == 'mpdit' else 'PPFlow'} {self.printed_name}"

    def row(self, key: str) -> Row:
        for r in self.rows:
            if r.key == key:
                return r
        raise ConfigError("paper_row", f"{self.ref}/{key}", "a row of " + self.name + ": "
                          + ", ".join(r.key for r in self.rows))


def _need(cond: bool, source: str, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(key, value, allowed, source)


def _model(value: Any, source: str, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"preset": value}
    _need(isinstance(value, dict) and isinstance(value.get("preset"), str)
          and set(value) <= {"preset", "overrides", "resolution"}, source, f"{where}.model", value,
          "a preset name or {preset, overrides, resolution}")
    return dict(value)


def _table(paper: str, raw: dict[str, Any], source: str) -> Table:
    tid = str(raw.get("id"))
    where = f"tables[{tid}]"
    columns = []
    for c in raw.get("columns", []):
        _need(isinstance(c, dict) and c.get("kind") in KINDS, source, f"{where}.columns", c,
              "{key, header, kind} with kind one of " + ", ".join(KINDS))
        columns.append(Column(**c))
    keys = {c.key for c in columns}
    convention = raw.get("own_gflops_convention", "paper")
    _need(convention in CONVENTIONS, source, f"{where}.own_gflops_convention", convention, ", ".join(CONVENTIONS))
    rows = []
    for r in raw.get("rows", []):
        rwhere = f"{where}.rows[{r.get('key')}]"
        for k in r:
            _need(k in ROW_KEYS, source, f"{rwhere}.{k}", r[k], "one of " + ", ".join(ROW_KEYS))
        values = dict(r.get("values", {}))
        for k in values:
            _need(k in keys, source, f"{rwhere}.values.{k}", values[k], "a column key: " + ", ".join(sorted(keys)))
        recipe = {**raw.get("recipe", {}), **(raw.get("own_recipe", {}) if r.get("own") else {}),
                  **r.get("recipe", {})}
        own = bool(r.get("own", False))
        rows.append(Row(paper, tid, str(r["key"]), str(r["label"]), values, recipe,
                        _model(r.get("model"), source, rwhere), own, dict(r.get("compute", {})),
                        convention if own else "true"))
    seen = [r.key for r in rows]
    _need(len(set(seen)) == len(seen), source, f"{where}.rows", seen, "unique row keys")
    return Table(paper, tid, str(raw.get("name") or f"Table {tid}"), str(raw["title"]), raw.get("note"), tuple(columns), tuple(rows))


@cache
def load(paper: str) -> tuple[Table, ...]:
    """Every table of one paper, in the paper's order."""
    _need(paper in PAPERS, "mpdit_bench/paper", "paper", paper, ", ".join(PAPERS))
    source = f"mpdit_bench/paper/{paper}.yaml"
    raw = yaml.safe_load(resources.files(__name__).joinpath(f"{paper}.yaml").read_text())
    return tuple(_table(paper, t, source) for t in raw["tables"])


def tables(paper: str | None = None) -> list[Table]:
    return [t for p in ((paper,) if paper else PAPERS) for t in load(p)]


def table(ref: str) -> Table:
    """``PAPER/TABLE``, e.g. ``mpdit/4``."""
    paper, _, tid = ref.partition("/")
    found = [t for t in tables(paper) if t.id == tid] if paper in PAPERS else []
    _need(bool(found), "mpdit_bench/paper", "paper_table", ref,
          "PAPER/TABLE, one of " + ", ".join(t.ref for t in tables()))
    return found[0]


def row(ref: str) -> Row:
    """``PAPER/TABLE/ROW``, e.g. ``mpdit/4/mpdit-b-k4``."""
    head, _, key = ref.rpartition("/")
    _need(head.count("/") == 1, "mpdit_bench/paper", "paper_row", ref,
          "PAPER/TABLE/ROW, e.g. mpdit/4/mpdit-b-k4")
    return table(head).row(key)


def rows_for(cfg) -> list[Row]:
    """The rows whose architecture is exactly ``cfg`` (a ModelConfig), in the papers' order."""
    return [r for t in tables() for r in t.rows if r.model is not None and r.model_config() == cfg]
