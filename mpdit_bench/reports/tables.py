"""Rows of an experiment's run table: published figures beside our counts and metrics.

The published figures come from the table row the run names (``paper_row``, `mpdit_bench.paper`), else from
the preset's figures for an unmodified preset; a figure the paper does not print for the run reads
"n/a (not in the paper)". A metric we did not compute (not run yet, or reported null by the evaluator)
reads "—", never 0.
"""

from __future__ import annotations

import math
from typing import Any

from mpdit_bench import paper as published
from mpdit_bench.config import ModelConfig
from mpdit_bench.paper.figures import paper_figures
from mpdit_bench.counting import analytic_counts
from mpdit_bench.sweeps.runspec import RunSpec

NOT_IN_FACTS = "n/a (not in the paper)"
MISSING = "—"


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.3g}"
    return str(value)


def cost_row(spec: RunSpec, record: dict[str, Any] | None, primary: str) -> dict[str, str]:
    """Architecture and cost: published figures, our count of the same (full-size) architecture, the
    trained model's count at this scale, images seen and training time."""
    full = ModelConfig.from_dict(spec.full_config)
    printed = printed_figures(spec, full, primary)
    ours = analytic_counts(full)
    row = {
        "run": spec.label,
        "paper row": spec.paper_row or MISSING,
        "seed": f"{spec.seed} (smoke)" if spec.smoke else str(spec.seed),
        "params M (paper)": fmt(printed["params"], 1) if printed["params"] is not None else NOT_IN_FACTS,
        "params M (ours)": fmt(ours["params"] / 1e6, 1),
        "GFLOPs (paper)": fmt(printed["gflops"], 2) if printed["gflops"] is not None else NOT_IN_FACTS,
        "GFLOPs true (ours)": fmt(ours["gflops"], 2),
        "GFLOPs paper conv. (ours)": fmt(ours["gflops_paper_convention"], 2),
    }
    rec = record or {}
    if spec.scale == "cpu":  # the model actually trained is the scaled-down one
        row["trained params M"] = fmt(rec["params"] / 1e6, 3) if rec.get("params") else MISSING
        row["trained GFLOPs true"] = fmt(rec.get("gflops"), 3)
        row["trained GFLOPs paper conv."] = fmt(rec.get("gflops_paper_convention"), 3)
    row["images seen"] = fmt(rec.get("images_seen"))
    seconds = (rec.get("timings") or {}).get("train")
    row["train min"] = fmt(seconds / 60 if seconds is not None else None, 1)
    row["status"] = "finished" if record else "not run"
    return row


def metrics_row(spec: RunSpec, record: dict[str, Any] | None, metrics: list[str], primary: str) -> dict[str, str]:
    """The run's metrics beside the paper's printed primary metric for the row it rebuilds."""
    printed = printed_figures(spec, ModelConfig.from_dict(spec.full_config), primary)
    row = {"run": spec.label, "seed": f"{spec.seed} (smoke)" if spec.smoke else str(spec.seed),
           f"{primary} (paper)": fmt(printed["metric"]) if printed["metric"] is not None else NOT_IN_FACTS}
    got = (record or {}).get("metrics") or {}
    for name in metrics:
        row[f"{name} (ours)"] = fmt(got.get(name), 3)
    return row


def split_constant(rows: list[dict[str, str]], keep: tuple[str, ...] = ("run",)) -> tuple[list[dict[str, str]],
                                                                                         dict[str, str]]:
    """Rows without the columns that read the same on every row (of two or more), and those columns'
    common values, to be stated once under the table."""
    if len(rows) < 2:
        return rows, {}
    same = {c: rows[0][c] for c in rows[0] if c not in keep and all(r.get(c) == rows[0][c] for r in rows)}
    return [{c: v for c, v in r.items() if c not in same} for r in rows], same


def printed_figures(spec: RunSpec, full: ModelConfig, primary: str) -> dict[str, Any]:
    """Params, GFLOPs and the metric ``primary`` as the paper prints them for this run (None: not printed)."""
    if spec.paper_row:
        row = published.row(spec.paper_row)
        table = published.table(f"{row.paper}/{row.table}")
        guided = any(float(w) != 1.0 for w in (spec.sample.get("cfg_scale", 1.0)
                                               if isinstance(spec.sample.get("cfg_scale"), list)
                                               else [spec.sample.get("cfg_scale", 1.0)]))
        by_kind = {c.kind: row.values.get(c.key) for c in table.columns if c.kind in ("params", "gflops")}
        metric = next((row.values.get(c.key) for c in table.columns if c.kind == "metric" and c.metric == primary
                       and c.guided in (None, guided)), None)
        return {"params": by_kind.get("params"), "gflops": by_kind.get("gflops"), "metric": metric}
    paper = paper_figures(spec.model, full)
    return {"params": paper.params_m if paper else None, "gflops": paper.gflops if paper else None, "metric": None}


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_no rows_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r.get(c, MISSING) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
