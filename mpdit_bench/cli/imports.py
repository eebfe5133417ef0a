"""`import`: a checkpoint in its source's own format (the MPDiT authors', SiT, PPFlow) as a suite checkpoint."""

from __future__ import annotations

from typing import Optional

import typer

from mpdit_bench.cli.common import console, fail


def import_checkpoint(file: str = typer.Argument(..., help="Checkpoint in its source's format (e.g. "
                                                           "SiT-XL-2-256x256.pt, PPF-XL-2.pt, a train.py checkpoint)"),
                      out: str = typer.Option(..., "--out", help="Suite checkpoint to write (.pt)"),
                      source: Optional[str] = typer.Option(None, "--source",
                                                           help="mpdit, sit or ppflow (default: read from the tensors)"),
                      expect: Optional[str] = typer.Option(None, "--expect",
                                                           help="Preset the architecture must be, e.g. SiT-XL/2"),
                      num_heads: Optional[int] = typer.Option(None, "--num-heads",
                                                              help="Attention heads, for widths that do not tell")) -> None:
    """Import a released or train.py checkpoint of the MPDiT authors, SiT or PPFlow into the suite's format."""
    from mpdit_bench.imports import SOURCES, ImportRefused, write_suite_checkpoint

    if source is not None and source not in SOURCES:
        fail(f"--source {source!r} is invalid; allowed: {', '.join(SOURCES)}")
    try:
        with console.status(f"importing {file}"):
            result = write_suite_checkpoint(file, out, source, expect, num_heads)
    except ImportRefused as err:  # a file that is not what import reads: the work failed, as `sample` reports
        fail(str(err), code=1)
    sample = result["sample"]
    console.print(f"[bold green]wrote[/] {result['out']}: {result['source']} {result['format']} checkpoint, "
                  f"preset {result['preset'] or '(none)'}, {result['tensors']} tensors, step {result['step']}, "
                  f"config hash {result['config_hash']}"
                  + (f"; sampling defaults {sample}" if sample else ""))
