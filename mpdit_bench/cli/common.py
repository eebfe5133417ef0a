"""What every command shares: the consoles, the one way to refuse input, and the `--set` option."""

from __future__ import annotations

from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="Config override key=value (repeatable), e.g. --set refine_depth=4")


def report_error(message: str) -> None:
    """Bad input on stderr, unwrapped and without markup (messages quote values like [4, 2])."""
    err_console.print("[bold red]error:[/]", escape(message), soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Report ``message`` and exit with ``code`` (2: bad input; 1: the work itself failed)."""
    report_error(message)
    raise typer.Exit(code)


def fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def published(value: Optional[float]) -> str:
    """A paper's figure at the precision it was printed."""
    return "-" if value is None else f"{value:g}"
