"""What every command shares: the consoles, the one way to refuse input, and the `--set` option."""

from __future__ import annotations

from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="Config override key=value (repeatable), e.g. --set refine_depth=4")


def load_plugins(plugins: Optional[list[str]]) -> list[str]:
    """``--plugin`` values imported as the option is parsed, so their components are registered before
    the command checks any name; the installed plugins (entry points) come first. Returns the list with
    .py paths made absolute, for the commands that record it."""
    from mpdit_bench import plugins as user_plugins
    from mpdit_bench.validation import ConfigError

    try:
        user_plugins.load(plugins or [], "--plugin")
    except ConfigError as err:
        fail(str(err))
    return user_plugins.resolved(plugins or [])


PluginOption = typer.Option(None, "--plugin", callback=load_plugins, is_eager=True,
                            help="A module or .py file of your own components to import first (repeatable), "
                                 "e.g. --plugin my_lab.parts or --plugin ./parts.py")


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
