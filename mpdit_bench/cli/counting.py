"""Counting commands: `models`, `flops`, `components`, `tables`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mpdit_bench.cli.common import PluginOption, SetOption, console, err_console, fail
from mpdit_bench.cli.render import MODELS_NOTES, models_table, print_flops
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
           scale: str = typer.Option("paper", help="Which runs fill the metric columns: paper or cpu"),
           as_json: bool = typer.Option(False, "--json", help="A JSON list of tables instead of markdown"),
           out: Optional[str] = typer.Option(None, "--out", help="Write one markdown file per table into DIR"),
           plugins: Optional[list[str]] = PluginOption) -> None:
    """Every table of both papers in their own layout: the printed figures beside ours (counts computed for
    every architecture row, metrics from finished runs)."""
    from mpdit_bench.reports.paper_render import table_markdown
    from mpdit_bench.reports.paper_tables import build_tables, load_run_records

    if paper is not None and paper not in ("mpdit", "ppflow"):
        fail(f"--paper {paper!r} is invalid; allowed: mpdit, ppflow")
    if scale not in ("paper", "cpu"):
        fail(f"--scale {scale!r} is invalid; allowed: paper, cpu")
    try:
        built = build_tables(paper, table, load_run_records(results), scale)
    except ConfigError as err:
        fail(str(err))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for t in built:
            path = Path(out) / f"{t['paper']}_table_{t['id']}.md"
            path.write_text(table_markdown(t, heading="#"))
            err_console.print(f"wrote {path}")
    if as_json:
        print(json.dumps(built, indent=1))
    elif not out:
        print("\n".join(table_markdown(t) for t in built))
