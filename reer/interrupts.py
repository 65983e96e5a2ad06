"""Ctrl-C during a search: the first asks to stop after the current batch, a second stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from reer.console import notice


class StopRequested(KeyboardInterrupt):
    """The run stopped at a batch boundary because Ctrl-C asked it to."""


@contextmanager
def stop_after_batch() -> Iterator[Callable[[], bool]]:
    """Yield a function that says whether Ctrl-C has asked the run to stop."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set  # signals reach only the main thread; Ctrl-C acts as Python's default
        return

    def ask_to_stop(signum, frame) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        notice("stopping after the current batch; press Ctrl-C again to stop at once")

    previous = signal.signal(signal.SIGINT, ask_to_stop)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
