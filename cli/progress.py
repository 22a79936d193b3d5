"""A progress bar with time left for sampling windows, drawn on stderr only when it is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(seconds: float, label: str) -> Iterator[Callable[[float], None]]:
    """Yield `tick(fraction_done)`; a no-op when stderr is not a TTY (scripts, CI, --json)."""
    if seconds <= 0 or not sys.stderr.isatty():
        yield lambda fraction: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task(f"{label} {seconds:g}s", total=1.0)
        yield lambda fraction: prog.update(task, completed=fraction)
