"""What a user sees on the terminal: one-line notices and a progress hook, outside Prefect's logs."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

err = Console(stderr=True, highlight=False)
_progress: list[Callable[[int, int], None]] = []


def notice(line: str) -> None:
    """One plain line on stderr (a skipped record, a warning)."""
    err.print(line, markup=False, soft_wrap=True)


def on_progress(callback: Callable[[int, int], None]) -> None:
    """Register a callback that hears (items finished, items in total)."""
    _progress.append(callback)


def report_progress(done: int, total: int) -> None:
    for callback in _progress:
        callback(done, total)
