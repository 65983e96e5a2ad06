"""What a user sees on the terminal: one-line notices and a progress hook, outside Prefect's logs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console

err = Console(stderr=True, highlight=False)

# Whole escape sequences first (CSI with its parameters; OSC, DCS, SOS, PM and APC up to their
# terminator; the other ESC forms), then any control character left: C0 but newline and tab, DEL, C1.
_CONTROLS = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def clean(text: str) -> str:
    """Stored text as it may reach a terminal: no escape sequence, no control character but newline and tab."""
    return _CONTROLS.sub("", text)


@dataclass(frozen=True)
class SearchProgress:
    """Where a search run stands: sent after every stored batch (and once before the first)."""

    items_done: int
    items_total: int
    steps: int  # search steps stored so far in this run: z(0)s scored plus refinement steps
    generated_tokens: int  # by this run's generator calls so far
    scored_tokens: int  # by this run's scorer calls so far
    seconds: float  # since the search started
    # each model's share of those seconds with at least one call in flight ("generator", "scorer"...)
    busy: dict[str, float] = field(default_factory=dict)


_progress: list[Callable[[SearchProgress], None]] = []


def notice(line: str) -> None:
    """One plain line on stderr (a skipped record, a warning), without escape sequences: it may quote data."""
    err.print(clean(line), markup=False, soft_wrap=True)


def on_progress(callback: Callable[[SearchProgress], None]) -> Callable[[], None]:
    """Register a callback that hears every SearchProgress; what it returns unregisters it."""
    _progress.append(callback)
    return lambda: _progress.remove(callback)


def report_progress(progress: SearchProgress) -> None:
    for callback in _progress:
        callback(progress)
