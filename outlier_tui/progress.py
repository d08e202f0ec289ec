"""Model build and load progress on the command line: rich.progress on stderr.

Every command that builds the demo model or loads a model shows the engine's
LoadProgress events the same way. Nothing is drawn before the first event, so
a named model folder (no demo build) leaves no empty bar behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from engine.api import LoadProgress, ProgressFn


@contextmanager
def progress_bar(label: str, stream: TextIO | None = None, *, transient: bool = False) -> Iterator[ProgressFn]:
    """Yields an on_progress callback (safe from any thread) that draws one labelled bar.

    transient: on a terminal, erase the bar when done (the REPL, whose prompt follows); else
    it stays as the last line. Off a terminal rich draws the final state once, at the end."""
    console = Console(file=stream, stderr=stream is None)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
        console=console,
        transient=transient and console.is_terminal,
    )
    task: list[TaskID] = []

    def on_progress(event: LoadProgress) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(label, total=1.0, message=""))
        bar.update(task[0], completed=max(0.0, min(1.0, event.fraction)), message=event.message)

    try:
        yield on_progress
    finally:
        if task:
            bar.stop()
