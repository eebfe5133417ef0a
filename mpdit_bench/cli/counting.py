"""Counting commands: `models`, `flops`, `components`, `tables`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from mpdit_bench.cli.common import PluginOption, SetOption, console, err_console, fail
from mpdit_bench.cli.render import MODELS_NOTES, models_table, paper_table, paper_table_notes, print_flops
from mpdit_bench.config import ConfigError, parse_set


def models(pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'MPDiT-*'"),
           resolution: int = typer.Option(256, help="Image resolution in pixels (latent = px / 8)"),
           as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table"),
           plugins: Optional[list[str]] = PluginOption) -> None:
    """List model presets with parameters and GFLOPs (analytic count, equal to fvcore's)."""
    from mpdit_bench.counting import preset_rows

    try:
        rows = preset_rows(pattern, resolution)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    console.print(models_table(rows, resolution))
    console.print(MODELS_NOTES, style="dim")


def flops(model: str = typer.Option(..., "--model", "-m", help="Preset name (see `models`) or b / l / xl"),
          resolution: int = typer.Option(256, help="Image resolution in pixels: 256 or 512 (latent = px / 8)"),
          overrides: Optional[list[str]] = SetOption,
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
          cross_check: bool = typer.Option(True, help="Also count with ptflops"),
          plugins: Optional[list[str]] = PluginOption) -> None:
    """Parameters and GFLOPs of one configuration: true (fvcore), analytic, paper convention, ptflops."""
    from mpdit_bench.counting import count_model

    try:
        result = count_model(model, resolution, parse_set(overrides or []), cross_check=cross_check)
    except ConfigError as err:
        fail(str(err))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_flops(result, resolution)


def components(plugins: Optional[list[str]] = PluginOption) -> None:
    """List the registered components of every kind."""
    import mpdit_bench.components  # noqa: F401 (importing the components registers them)
    from mpdit_bench import registry

    for kind in registry.kinds():
        console.print(f"[bold]{kind}[/]: " + ", ".join(registry.names(kind)))


def tables(table: Optional[str] = typer.Option(None, "--table", help="One table id, e.g. 4 (MPDiT) or main (PPFlow)"),
           paper: Optional[str] = typer.Option(None, "--paper", help="mpdit or ppflow (default: both)"),
           results: str = typer.Option("results", help="Results folder: runs whose record names a table row"),
           scale: Optional[str] = typer.Option(None, help="Which runs fill the metric columns: paper or cpu "
                                               "(default: the one scale of the records found, else cpu, "
                                               "as `sweep`)"),
           as_json: bool = typer.Option(False, "--json", help="A JSON list of tables instead of markdown"),
           out: Optional[str] = typer.Option(None, "--out", help="Write one markdown file per table into DIR"),
           plugins: Optional[list[str]] = PluginOption) -> None:
    """Every table of both papers in their own layout: the printed figures beside ours (counts computed for
    every architecture row, metrics from finished runs)."""
    from mpdit_bench.reports.paper_render import table_markdown
    from mpdit_bench.reports.paper_tables import build_tables, load_run_records

    if paper is not None and paper not in ("mpdit", "ppflow"):
        fail(f"--paper {paper!r} is invalid; allowed: mpdit, ppflow")
    if scale is not None and scale not in ("paper", "cpu"):
        fail(f"--scale {scale!r} is invalid; allowed: paper, cpu")
    records = load_run_records(results)
    scale = scale or _scale_of(records)
    try:
        built = build_tables(paper, table, records, scale)
    except ConfigError as err:
        fail(str(err))
    notes_console = console if not (as_json or out) else err_console  # stdout stays the JSON alone
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for t in built:
            path = Path(out) / f"{t['paper']}_table_{t['id']}.md"
            path.write_text(table_markdown(t, heading="#"))
            err_console.print(f"wrote {path}")
    if as_json:
        print(json.dumps(built, indent=1))
    elif not out:
        for t in built:
            console.print(paper_table(t))
            console.print()
        for note in paper_table_notes(built):
            console.print(Text(note, style="dim"))
    if any(c["kind"] == "metric" for t in built for c in t["columns"]):
        notes_console.print(Text(_metrics_note(built, records, scale, results)))


def _scale_of(records: list[dict]) -> str:
    """The scale whose runs fill the metric columns by default: the records' one scale, else `sweep`'s default."""
    scales = {r.get("scale") for r in records} - {None}
    return scales.pop() if len(scales) == 1 else "cpu"


def _metrics_note(built: list[dict], records: list[dict], scale: str, results: str) -> str:
    """Which runs the metric columns show, and why every metric cell is empty when it is."""
    shown = f"metrics: runs at scale {scale} in {results}"
    filled = any(r["ours"].get(c["key"]) is not None for t in built for c in t["columns"] if c["kind"] == "metric"
                 for r in t["rows"])
    if filled:
        return shown
    at_scale = [r for r in records if r.get("scale") == scale]
    if at_scale:
        return (f"{shown}: none of its {len(at_scale)} record(s) of scale {scale} names a row of these tables "
                "(an experiment variant's paper_row), so every metric cell is —")
    counts = Counter(r.get("scale") for r in records)
    found = ", ".join(f"{n} of scale {s} (--scale {s})" for s, n in sorted(counts.items(), key=str)) or "none"
    return f"no records of scale {scale} in {results}; records found: {found}"
