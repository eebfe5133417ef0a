"""One rich progress bar for the long loops (sampling, latent extraction, benchmarks), on stderr."""

from __future__ import annotations

from typing import Callable


def progress_bar(enabled: bool, total: int, what: str) -> tuple[object, Callable[[int], None]] | tuple[None, None]:
    """A started bar and its advance(n) function, or (None, None) when disabled (other ranks, tests)."""
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task(what, total=total)
    bar.start()
    return bar, lambda n: bar.advance(task, n)
