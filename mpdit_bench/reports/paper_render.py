"""Markdown for the rebuilt paper tables (`mpdit_bench.reports.paper_tables`): the paper's layout, each printed
figure as a "paper" and an "ours" column, the gap beside ours, and footnotes naming the conventions."""

from __future__ import annotations

from typing import Any

MISSING = "—"
PAIRED = ("params", "gflops", "metric", "config", "ratio", "fraction", "speedup", "relative_flops")
MARK = {"paper": "¹", "true": "²", "unknown": "³"}
CONVENTIONS = {
    "paper": "the MPDiT paper's convention: Linear/Conv multiply-adds + blocks x 2 x N^2 x D with N the fine "
             "grid's tokens (attention charged at the fine grid in every block), a ConvTranspose2d charged per "
             "output position",
    "true": "the true count as DiT reports it (fvcore: one multiply-add = one FLOP, attention matmuls counted, "
            "batch 1)",
    "unknown": "a convention that no known counter reproduces; the gap is against our true count",
}


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) or digits else str(value)


def _decimals(value: Any) -> int:
    return len(repr(value).partition(".")[2]) if isinstance(value, float) else 0


def _printed(value: Any, decimals: int) -> str:
    """A paper's figure as printed: floats at the column's precision (YAML drops trailing zeros: 3.60 -> 3.6)."""
    if value is None:
        return MISSING
    return f"{value:.{decimals}f}" if isinstance(value, float) else str(value)


def _with_gap(text: str, gap: float | None) -> str:
    return text if gap is None else f"{text} ({gap:+.2f})"


def _ours(col: dict[str, Any], row: dict[str, Any]) -> str:
    key, kind, ours, gap = col["key"], col["kind"], row["ours"], row["gap"].get(col["key"])
    if not row["built"] and kind != "metric":
        return ""
    value = ours.get(key)
    if kind == "gflops":
        true, conv = _num(value), _num(ours.get(f"{key}_paper_convention"))
        if row["gflops_convention"] == "paper":
            return f"{_with_gap(conv, gap)} conv.; {true} true"
        return f"{_with_gap(true, gap)} true; {conv} conv."
    if kind in ("ratio", "fraction", "speedup"):
        unit = col.get("unit") or ""
        return f"{_with_gap(_num(value, 1) + ' ' + unit, gap)} conv.; {_num(ours.get(key + '_true'), 1)} {unit} true"
    if kind == "config":
        return _num(value, 0)
    if kind == "metric":
        n = ours.get(f"{key}_runs", 0)
        note = " (smoke)" if ours.get(f"{key}_smoke") else f" (mean of {n} runs)" if n > 1 else ""
        return _with_gap(_num(value, 3), gap) + (note if value is not None else "")
    return _with_gap(_num(value), gap)


def table_cells(table: dict[str, Any]) -> tuple[list[tuple[str, str | None]], list[tuple[str, list[tuple[str, str | None]]]],
                                               list[str]]:
    """The table as text, for any layout: each column's (header, label of its "ours" side or None where it has
    none), each row's (label, per column (printed figure, ours or None)), and the footnotes."""
    cols = table["columns"]
    headers = []
    for c in cols:  # metrics of runs at another scale than the paper's are marked in the header too
        ours = "ours" if c["kind"] != "metric" or table["scale"] == "paper" else f"ours, {table['scale']} scale"
        headers.append((c["header"], ours if c["kind"] in PAIRED else None))
    marks_used = set()
    decimals = {c["key"]: max(_decimals(r["paper"].get(c["key"])) for r in table["rows"]) for c in cols}
    rows = []
    for row in table["rows"]:
        cells = []
        for c in cols:
            printed = _printed(row["paper"].get(c["key"]), decimals[c["key"]])
            if c["kind"] == "gflops" and row["paper"].get(c["key"]) is not None:
                printed += MARK[row["gflops_convention"]]
                marks_used.add(row["gflops_convention"])
            cells.append((printed, _ours(c, row) if c["kind"] in PAIRED else None))
        rows.append((row["label"], cells))
    return headers, rows, _footnotes(table, marks_used)


def table_markdown(table: dict[str, Any], heading: str = "##") -> str:
    headers, rows, notes = table_cells(table)
    header = ["row"]
    for name, ours in headers:
        header += [f"{name} (paper)", f"{name} ({ours})"] if ours else [name]
    lines = [f"{heading} {table['name']}: {table['title']}", ""]
    if table.get("note"):
        lines += [table["note"], ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for label, cells in rows:
        lines.append("| " + " | ".join([label] + [x for printed, ours in cells
                                                  for x in ((printed, ours) if ours is not None else (printed,))])
                     + " |")
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _footnotes(table: dict[str, Any], marks_used: set[str]) -> list[str]:
    notes = [f"{MARK[k]} GFLOPs (paper) counted in {CONVENTIONS[k]}." for k in ("paper", "true", "unknown")
             if k in marks_used]
    kinds = {c["kind"] for c in table["columns"]}
    if "gflops" in kinds or "params" in kinds:
        notes.append("Ours: params and GFLOPs of the full-size architecture, counted analytically on the meta "
                     "device (no training); \"true\" = " + CONVENTIONS["true"] + "; \"conv.\" = "
                     + CONVENTIONS["paper"] + ". (±x) = ours - paper, against the convention the paper used.")
    if kinds & {"ratio", "fraction", "speedup"}:
        notes.append("Ratios from our counts: \"conv.\" puts MPDiT's paper-convention GFLOPs over DiT's true "
                     "count (as the paper's ratio does); \"true\" uses the true count for both.")
    if "relative_flops" in kinds:
        notes.append("Test FLOPs: the trajectory average over the stages (time fraction x FLOPs at that stage's "
                     "tokens) over the model without the schedule, in DiT's counting convention.")
    if "metric" in kinds:
        if table["scale"] == "paper":
            notes.append("Ours metrics: finished runs at scale paper whose record names this row (paper_row); "
                         f"{MISSING} = no such run.")
        else:
            notes.append(f"Ours metrics: runs at scale {table['scale']} (Fashion-MNIST, models scaled down by the "
                         "CPU rule, small-sample metrics): a check of the pipeline, not comparable with the "
                         f"paper's ImageNet figures, so no gap is shown; {MISSING} = no such run.")
    if kinds & set(PAIRED) and any(not r["built"] for r in table["rows"]):
        notes.append("Rows with empty ours cells are methods the suite does not build, shown as published.")
    return notes

