"""The search's progress while `reer run` works: live on a terminal, a plain line a minute elsewhere.

Both hear reer.console's SearchProgress, sent after every stored batch. On a terminal a rich
display shows items done of total, search steps, generated and scored tokens/s and the time
elapsed. Where stderr is no terminal (CI, a log file) a line like
`search: 3/10 items, 41 steps, 28 gen tok/s, 210 scored tok/s, 4m00s` goes out at most once
per minute, and once more at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reer.console import SearchProgress, on_progress


def rate(tokens: int, seconds: float) -> int:
    """Tokens per second, rounded ('0' before any time has passed)."""
    return round(tokens / seconds) if seconds > 0 else 0


def elapsed(seconds: float) -> str:
    """4m00s, or 1h02m03s."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def busy_text(p: SearchProgress) -> str:
    """Each model's busy share so far, `generator 92% busy, scorer 61% busy, `, or nothing before any is known."""
    return "".join(f"{model} {share:.0%} busy, " for model, share in p.busy.items())


def progress_line(p: SearchProgress) -> str:
    """One plain line: `search: 3/10 items, 41 steps, 28 gen tok/s, 210 scored tok/s, generator 92% busy, ..., 4m00s`."""
    return (
        f"search: {p.items_done}/{p.items_total} items, {p.steps} steps, "
        f"{rate(p.generated_tokens, p.seconds)} gen tok/s, {rate(p.scored_tokens, p.seconds)} scored tok/s, "
        f"{busy_text(p)}{elapsed(p.seconds)}"
    )


class PlainProgress:
    """A line per `every` seconds at most (the first `every` seconds after start), and the latest at the end."""

    def __init__(
        self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic, every: float = 60.0
    ) -> None:
        self.write, self.clock, self.every = write, clock, every
        self.last_line_at = clock()
        self.latest: SearchProgress | None = None
        self.written: SearchProgress | None = None

    def start(self) -> None:
        """Nothing to show before the first minute."""

    def update(self, progress: SearchProgress) -> None:
        self.latest = progress
        now = self.clock()
        if now - self.last_line_at >= self.every:
            self._line(progress)
            self.last_line_at = now

    def finish(self) -> None:
        """The latest progress, unless it is the line already written."""
        if self.latest is not None and self.latest != self.written:
            self._line(self.latest)

    def _line(self, progress: SearchProgress) -> None:
        self.write(progress_line(progress))
        self.written = progress


class LiveProgress:
    """A rich progress display on stderr, gone when the search ends (the run summary follows)."""

    def __init__(self, console: Console) -> None:
        self.display = Progress(
            TextColumn("searching"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items, {task.fields[steps]} steps, {task.fields[gen]} gen tok/s,"),
            TextColumn("{task.fields[scored]} scored tok/s,"),
            TextColumn("{task.fields[busy]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.display.add_task("search", total=None, steps=0, gen=0, scored=0, busy="")

    def update(self, p: SearchProgress) -> None:
        self.display.update(
            self.task,
            completed=p.items_done,
            total=p.items_total,
            steps=p.steps,
            gen=rate(p.generated_tokens, p.seconds),
            scored=rate(p.scored_tokens, p.seconds),
            busy=busy_text(p).removesuffix(", "),
        )

    def start(self) -> None:
        self.display.start()

    def finish(self) -> None:
        self.display.stop()


class SearchDisplay:
    """`with SearchDisplay():` shows the search's progress on stderr while the block runs."""

    def __init__(self) -> None:
        console = Console(stderr=True, highlight=False)
        if sys.stderr.isatty():
            self.view: LiveProgress | PlainProgress = LiveProgress(console)
        else:
            self.view = PlainProgress(lambda line: console.print(line, markup=False, soft_wrap=True))
        self.stop_hearing: Callable[[], None] = lambda: None

    def __enter__(self) -> SearchDisplay:
        self.view.start()
        self.stop_hearing = on_progress(self.view.update)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop_hearing()
        self.view.finish()
