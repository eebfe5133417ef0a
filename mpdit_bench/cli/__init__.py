"""The `mpdit-bench` command line: each command is a thin layer over the library.

    counting    models, flops, components, tables
    sweeps      sweep, search, report
    runs        train, sample, convert, extract-latents
    imports     import (the MPDiT authors', SiT and PPFlow checkpoints)
    evaluate    evaluate
    bench       bench train, bench sample, bench gpu
    render      the tables the commands print; common: consoles, `fail`, shared options
"""

from __future__ import annotations

import sys

import typer

from mpdit_bench.cli import bench, counting, evaluate, imports, runs, sweeps
from mpdit_bench.cli.common import report_error
from mpdit_bench.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Architecture search and ablation benchmarking of multi-patch diffusion transformers.")

for command in (counting.models, counting.flops, counting.components, counting.tables,
                sweeps.sweep, sweeps.search, sweeps.report,
                runs.train, runs.sample, runs.convert):
    app.command()(command)
app.command("extract-latents")(runs.extract_latents)
app.command("import")(imports.import_checkpoint)
app.add_typer(bench.app, name="bench")
app.command()(evaluate.evaluate)


def main() -> None:
    try:
        app()
    except ConfigError as err:  # any command: bad input is reported, not a traceback
        report_error(str(err))
        sys.exit(2)


__all__ = ["app", "main"]
