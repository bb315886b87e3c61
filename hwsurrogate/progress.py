"""Progress bars for long steps (rich), quiet when output is not a terminal or under CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars are drawn on an interactive terminal unless ``HWSURROGATE_NO_PROGRESS`` is set."""
    return sys.stderr.isatty() and not os.environ.get("HWSURROGATE_NO_PROGRESS")


def make_progress() -> Progress:
    """A rich ``Progress`` with description, bar, count, elapsed and remaining time (to stderr)."""
    from rich.console import Console

    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress_enabled(),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` while showing a progress bar labelled ``description``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@contextmanager
def step(description: str) -> Iterator[None]:
    """Show a spinner with elapsed time while one long step without a count runs (to stderr).

    Do not nest it inside :func:`track` or another ``step``: rich draws one live display at a time.
    """
    with make_progress() as progress:
        progress.add_task(description, total=None)
        yield
