"""The search's progress where stderr is no terminal: a plain line a minute at most, and one at the end."""

from __future__ import annotations

from reer.cli.progress import PlainProgress, SearchDisplay, elapsed, progress_line
from reer.console import SearchProgress, report_progress


def at(seconds: float, items_done: int = 3, steps: int = 41) -> SearchProgress:
    """Progress after `seconds`, at 28 generated and 210 scored tokens a second."""
    return SearchProgress(
        items_done=items_done,
        items_total=10,
        steps=steps,
        generated_tokens=round(28 * seconds),
        scored_tokens=round(210 * seconds),
        seconds=seconds,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_progress_line_says_items_steps_token_rates_and_time():
    assert progress_line(at(240)) == "search: 3/10 items, 41 steps, 28 gen tok/s, 210 scored tok/s, 4m00s"
    assert progress_line(at(0, items_done=0, steps=0)).endswith("0 gen tok/s, 0 scored tok/s, 0m00s")
    assert elapsed(59.9) == "0m59s" and elapsed(3723) == "1h02m03s"


def test_a_progress_line_says_how_busy_each_model_was():
    busy = SearchProgress(**{**at(240).__dict__, "busy": {"generator": 0.924, "scorer": 0.61}})
    assert progress_line(busy).endswith("210 scored tok/s, generator 92% busy, scorer 61% busy, 4m00s")


def test_lines_come_at_most_once_a_minute_and_once_at_the_end():
    clock, lines = Clock(), []
    progress = PlainProgress(lines.append, clock=clock)
    for seconds in (5, 30, 59):  # the first minute: nothing yet
        clock.now = 1000 + seconds
        progress.update(at(seconds, steps=seconds))
    assert lines == []
    clock.now = 1060
    progress.update(at(60, steps=60))
    clock.now = 1100
    progress.update(at(100, steps=100))  # 40 s after the last line
    assert lines == [progress_line(at(60, steps=60))]
    clock.now = 1125
    progress.update(at(125, steps=125))
    clock.now = 1130
    progress.update(at(130, steps=130))
    progress.finish()
    assert lines == [
        progress_line(at(60, steps=60)),
        progress_line(at(125, steps=125)),
        progress_line(at(130, steps=130)),
    ]


def test_the_end_line_is_not_repeated_and_no_progress_says_nothing():
    clock, lines = Clock(), []
    progress = PlainProgress(lines.append, clock=clock)
    progress.finish()
    assert lines == []
    clock.now = 1061
    progress.update(at(61))
    progress.finish()
    assert lines == [progress_line(at(61))]


def test_the_display_hears_progress_only_while_it_runs(capsys):
    with SearchDisplay():  # stderr is captured: no terminal, so plain lines
        report_progress(at(10))
        report_progress(at(20, items_done=4))
    report_progress(at(30, items_done=5))
    assert capsys.readouterr().err.splitlines() == [progress_line(at(20, items_done=4))]
