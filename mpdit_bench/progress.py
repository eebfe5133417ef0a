"""The suite's one progress bar (training, sampling, latent extraction, feature extraction), on stderr so
that ``--json`` output on stdout stays one clean object."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class ProgressBar:
    """label, bar, done/total [unit], [fields], elapsed, ETA. Disabled (other ranks, tests, ``progress:
    false``) it draws nothing and every method does nothing.

    ``fields`` name the text shown beside the count, each a template around its value, e.g.
    ``{"loss": "loss {}", "ips": "{} img/s"}``; values read "-" until ``update`` sets them."""

    def __init__(self, label: str, total: int, enabled: bool = True, unit: str | None = None, done: int = 0,
                 fields: Mapping[str, str] | None = None):
        self.enabled = enabled
        if not enabled:
            return
        fields = dict(fields or {})
        self.console = Console(stderr=True)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
        columns += [TextColumn(unit)] if unit else []
        columns += [TextColumn(template.format(f"{{task.fields[{name}]}}")) for name, template in fields.items()]
        columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
        self.bar = Progress(*columns, console=self.console)
        self.task = self.bar.add_task(label, total=total, completed=done, **{name: "-" for name in fields})
        self.bar.start()

    def advance(self, n: int = 1) -> None:
        if self.enabled:
            self.bar.advance(self.task, n)

    def update(self, done: int, **fields: Any) -> None:
        """Set the count to ``done`` and the given fields (already formatted)."""
        if self.enabled:
            self.bar.update(self.task, completed=done, **fields)

    def log(self, line: str) -> None:
        """A plain line when stderr is not a terminal (a log file or Slurm output, where the bar is not drawn)."""
        if self.enabled and not self.console.is_terminal:
            self.console.print(line, highlight=False)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ProgressBar"]
