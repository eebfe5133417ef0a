"""The papers' tables rebuilt: every printed figure beside ours, as plain dicts.

For each row of a table in ``mpdit_bench.paper``: ``paper`` holds the printed values; ``ours`` holds, for a row
the suite builds, its params and GFLOPs (true count and the MPDiT paper's convention, analytic on the meta
device, no training), the computed columns (Table 2's ratio, Sec. 7's training compute, PPFlow's relative test
FLOPs) and, where a finished run's record names the row (``spec.paper_row``), its metrics; ``gap`` holds
ours - paper where both exist and are comparable. A value we do not have is None (shown "—", never 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mpdit_bench import paper as published
from mpdit_bench.models import model_config

# The scale whose metrics are on the papers' footing; at cpu scale the metrics are Fashion-MNIST stand-ins.
COMPARABLE_SCALE = "paper"


def load_run_records(results_dir: str | Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).rglob("record.json"))]


class _Counts:
    """Analytic counts per architecture, each counted once however many rows share it."""

    def __init__(self) -> None:
        self._cache: dict[str, dict[str, float]] = {}

    def of(self, cfg) -> dict[str, float]:
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key not in self._cache:
            self._cache[key] = _count(cfg)
        return self._cache[key]


def _count(cfg) -> dict[str, float]:
    import torch

    from mpdit_bench.counting import analytic_counts, trajectory_flops
    from mpdit_bench.models import build_model

    out = analytic_counts(cfg)
    if cfg.time_patch_sizes:  # PPFlow: trajectory average against the model without the schedule
        with torch.device("meta"):
            model = build_model(cfg)
        out["relative_flops_pct"] = 100.0 * trajectory_flops(model) / model.flops()
    return out


def _guided(record: dict[str, Any]) -> bool:
    scales = ((record.get("spec") or {}).get("sample") or {}).get("cfg_scale", 1.0)
    return any(float(w) != 1.0 for w in (scales if isinstance(scales, list) else [scales]))


def _runs_of(row: published.Row, records: list[dict[str, Any]], scale: str) -> list[dict[str, Any]]:
    def names(rec: dict[str, Any]) -> list[str]:
        refs = (rec.get("spec") or {}).get("paper_row")
        return refs if isinstance(refs, list) else [refs]

    return [r for r in records if r.get("scale") == scale and row.ref in names(r)]


def _metric(runs: list[dict[str, Any]], column: published.Column) -> tuple[float | None, int]:
    """Mean of the metric over the matching runs that report it, and how many did."""
    if column.guided is not None:
        runs = [r for r in runs if _guided(r) == column.guided]
    values = [v for r in runs if isinstance(v := (r.get("metrics") or {}).get(column.metric), (int, float))
              and not (isinstance(v, float) and math.isnan(v))]
    return (sum(values) / len(values) if values else None), len(values)


def _training_fraction(row: published.Row, counts: _Counts) -> dict[str, float]:
    """Sec. 7: (epochs x GFLOPs) of MPDiT over DiT's, with our counts: paper convention for MPDiT (as the
    paper's 49.9 % ratio uses) and true for both."""
    c = row.compute
    ours = counts.of(model_config(c["ours"]["preset"], c["resolution"]))
    theirs = counts.of(model_config(c["theirs"]["preset"], c["resolution"]))
    e_ours, e_theirs = c["ours"]["epochs"], c["theirs"]["epochs"]
    true = 100.0 * e_ours * ours["gflops"] / (e_theirs * theirs["gflops"])
    conv = 100.0 * e_ours * ours["gflops_paper_convention"] / (e_theirs * theirs["gflops"])
    return {"fraction": conv, "fraction_true": true, "speedup": 100.0 / conv, "speedup_true": 100.0 / true}


def _gap(ours: Any, paper: Any) -> float | None:
    if isinstance(ours, (int, float)) and isinstance(paper, (int, float)):
        return ours - paper
    return None


def build_row(table: published.Table, row: published.Row, counts: _Counts, records: list[dict[str, Any]],
              scale: str) -> dict[str, Any]:
    cfg = row.model_config()
    c = counts.of(cfg) if cfg is not None else None
    runs = _runs_of(row, records, scale)
    ours: dict[str, Any] = {}
    gap: dict[str, Any] = {}
    for col in table.columns:
        printed = row.values.get(col.key, row.recipe.get(col.key) if col.kind == "recipe" else None)
        value: Any = None
        if col.kind == "params" and c:
            value = c["params"] / 1e6
            gap[col.key] = _gap(value, printed)
        elif col.kind == "gflops" and c:
            value = c["gflops"]
            ours[f"{col.key}_paper_convention"] = c["gflops_paper_convention"]
            compared = c["gflops_paper_convention"] if row.gflops_convention == "paper" else c["gflops"]
            gap[col.key] = _gap(compared, printed)
        elif col.kind == "config" and cfg is not None:
            value = cfg.depths[-1] if col.config == "refine_depth" else getattr(cfg, col.config)
        elif col.kind == "ratio" and c:
            dit = counts.of(model_config(row.compute["versus"], row.recipe.get("resolution")))
            value = 100.0 * c["gflops_paper_convention"] / dit["gflops"]
            ours[f"{col.key}_true"] = 100.0 * c["gflops"] / dit["gflops"]
            gap[col.key] = _gap(value, printed)
        elif col.kind in ("fraction", "speedup") and row.compute:
            fractions = _training_fraction(row, counts)
            value = fractions[col.kind]
            ours[f"{col.key}_true"] = fractions[f"{col.kind}_true"]
            gap[col.key] = _gap(value, printed)
        elif col.kind == "relative_flops" and c:
            value = c.get("relative_flops_pct", 100.0)
            gap[col.key] = _gap(value, printed)
        elif col.kind == "metric":
            value, n = _metric(runs, col)
            ours[f"{col.key}_runs"] = n
            ours[f"{col.key}_smoke"] = bool(runs) and all(r.get("smoke") for r in runs)
            if scale == COMPARABLE_SCALE:
                gap[col.key] = _gap(value, printed)
        ours[col.key] = value
    return {"key": row.key, "ref": row.ref, "label": row.label, "built": cfg is not None or bool(row.compute),
            "gflops_convention": row.gflops_convention, "recipe": row.recipe,
            "paper": {col.key: row.values.get(col.key, row.recipe.get(col.key) if col.kind == "recipe" else None)
                      for col in table.columns},
            "ours": ours, "gap": {k: v for k, v in gap.items() if v is not None},
            "runs": [r["run_id"] for r in runs]}


def build_table(table: published.Table, records: list[dict[str, Any]], scale: str = COMPARABLE_SCALE,
                counts: _Counts | None = None) -> dict[str, Any]:
    counts = counts or _Counts()
    return {"paper": table.paper, "id": table.id, "ref": table.ref, "name": table.name, "title": table.title,
            "note": table.note, "scale": scale,
            "columns": [{"key": c.key, "header": c.header, "kind": c.kind, "unit": c.unit} for c in table.columns],
            "rows": [build_row(table, row, counts, records, scale) for row in table.rows]}


def build_tables(paper: str | None = None, table_id: str | None = None, records: list[dict[str, Any]] = (),
                 scale: str = COMPARABLE_SCALE) -> list[dict[str, Any]]:
    """Every table (of one paper, or one table id) with ours beside the paper's."""
    chosen = [t for t in published.tables(paper) if table_id is None or t.id == table_id]
    if not chosen:
        from mpdit_bench.config import ConfigError

        raise ConfigError("--table", table_id, "a table id of " + (paper or "either paper") + ": "
                          + ", ".join(t.id for t in published.tables(paper)))
    counts = _Counts()
    return [build_table(t, list(records), scale, counts) for t in chosen]
