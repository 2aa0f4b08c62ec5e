"""Progress of a migration: one line per stage with its rate and ETA.

`Progress` is what the engine calls; `RichProgress` draws it with rich (rows/s or
bytes/s, ETA), `LineProgress` prints a line per finished stage (logs, CI), and
`NullProgress` is silent (the library default).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBar
from rich.text import Text


class Progress(Protocol):
    def start(self, stage: str, total: int | None, done: int = 0, unit: str = "rows") -> None: ...
    def advance(self, stage: str, n: int) -> None: ...
    def finish(self, stage: str) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def start(self, stage: str, total: int | None, done: int = 0, unit: str = "rows") -> None:
        pass

    def advance(self, stage: str, n: int) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class _Rate(ProgressColumn):
    """Rows/s or bytes/s over the run (rich's own speed is a short-window estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "rows")
        if speed is None:
            return Text(f"- {unit}/s", style="progress.data.speed")
        if unit == "bytes":
            return Text(f"{_bytes(speed)}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {unit}/s", style="progress.data.speed")


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.0f} TB"


class RichProgress:
    def __init__(self, console: Console | None = None) -> None:
        self._bar = RichBar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[str, Any] = {}
        self._bar.start()

    def start(self, stage: str, total: int | None, done: int = 0, unit: str = "rows") -> None:
        self._tasks[stage] = self._bar.add_task(stage, total=total, completed=done, unit=unit)

    def advance(self, stage: str, n: int) -> None:
        self._bar.advance(self._tasks[stage], n)

    def finish(self, stage: str) -> None:
        task = self._tasks[stage]
        total = self._bar.tasks[task].total
        done = self._bar.tasks[task].completed
        self._bar.update(task, total=max(total or 0, done), completed=max(total or 0, done))

    def message(self, text: str) -> None:
        self._bar.console.print(text, highlight=False)

    def close(self) -> None:
        self._bar.stop()


class LineProgress:
    """A line per finished stage: rows, seconds, rate. For output that is not a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._stages: dict[str, list[Any]] = {}

    def start(self, stage: str, total: int | None, done: int = 0, unit: str = "rows") -> None:
        self._stages[stage] = [time.perf_counter(), done, 0, unit]

    def advance(self, stage: str, n: int) -> None:
        self._stages[stage][2] += n

    def finish(self, stage: str) -> None:
        start, before, n, unit = self._stages[stage]
        seconds = time.perf_counter() - start
        rate = n / seconds if seconds > 0 else 0
        self.console.print(
            f"{stage}: {before + n:,} {unit} ({n:,} this run, {rate:,.0f} {unit}/s)",
            highlight=False,
        )

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def close(self) -> None:
        pass
