"""Rows of a paper table: published figures (from presets only) beside our counts and metrics.

The published figures come from `mpdit_bench.models.presets` and nowhere else. The bundled facts carry
parameters and GFLOPs but no FID, so a paper metric cell reads "n/a (not in the bundled facts)". A metric
we did not compute (not run yet, or reported null by the evaluator) reads "—", never 0.
"""

from __future__ import annotations

import math
from typing import Any

from mpdit_bench.config import ModelConfig
from mpdit_bench.models import paper_figures
from mpdit_bench.sweeps.costs import analytic_counts
from mpdit_bench.sweeps.experiment import RunSpec

NOT_IN_FACTS = "n/a (not in the bundled facts)"
MISSING = "—"


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.3g}"
    return str(value)


def table_row(spec: RunSpec, record: dict[str, Any] | None, metrics: list[str], primary: str) -> dict[str, str]:
    """One row: published figures, our count of the same (full-size) architecture, the trained run."""
    full = ModelConfig.from_dict(spec.full_config)
    paper = paper_figures(spec.model, full)
    ours = analytic_counts(full)
    row = {
        "run": spec.label,
        "seed": f"{spec.seed} (smoke)" if spec.smoke else str(spec.seed),
        "params M (paper)": fmt(paper.params_m, 1) if paper and paper.params_m is not None else NOT_IN_FACTS,
        "params M (ours)": fmt(ours["params"] / 1e6, 1),
        "GFLOPs (paper)": fmt(paper.gflops, 2) if paper and paper.gflops is not None else NOT_IN_FACTS,
        "GFLOPs true (ours)": fmt(ours["gflops"], 2),
        "GFLOPs paper conv. (ours)": fmt(ours["gflops_paper_convention"], 2),
    }
    row[f"{primary} (paper)"] = NOT_IN_FACTS  # MPDiT.md carries no FID / metric values
    if spec.scale == "cpu":  # the model actually trained is the scaled-down one
        rec = record or {}
        row["trained params M"] = fmt(rec["params"] / 1e6, 3) if rec.get("params") else MISSING
        row["trained GFLOPs true"] = fmt(rec.get("gflops"), 3)
        row["trained GFLOPs paper conv."] = fmt(rec.get("gflops_paper_convention"), 3)
    got = (record or {}).get("metrics") or {}
    for name in metrics:
        row[f"{name} (ours)"] = fmt(got.get(name), 3)
    row["images seen"] = fmt((record or {}).get("images_seen"))
    seconds = ((record or {}).get("timings") or {}).get("train")
    row["train min"] = fmt(seconds / 60 if seconds is not None else None, 1)
    row["status"] = "finished" if record else "not run"
    return row


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_no rows_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r.get(c, MISSING) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
