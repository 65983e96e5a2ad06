"""What the commands print: the run summary of a RunSummary, and tables whose short cells never fold."""

from __future__ import annotations

from reer.cli.rendering import print_rows, print_summary
from reer.tasks.summary import RunSummary


def test_the_run_summary_shows_every_figure_and_what_failed(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    summary = RunSummary(
        run_id="20261122-abc",
        db="reer.duckdb",
        items=2,
        completed=2,
        mean_initial_score=1.5,
        mean_final_score=1.25,
        candidates=8,
        wall_seconds=12.5,
        skipped_done=0,
        resumed=1,
        passed=1,
        pass_rates={"thinking_closed": 0.5, "ends_sentence": 1.0},
        rejects_by_reason=[{"stage": "sourcing", "reason": "malformed_json", "n": 3}],
        exported={"parquet": "reer-out/20261122-abc/train.parquet"},
    )
    print_summary(summary)
    printed = capsys.readouterr().out
    assert "reer run 20261122-abc" in printed and "1.5000 -> 1.2500" in printed and "0 / 8" in printed
    assert "1 of 2" in printed and "reer-out/20261122-abc/train.parquet" in printed and "12.5 s" in printed
    assert "rejected at sourcing: malformed_json x3" in printed
    assert "check thinking_closed: 50.0% pass" in printed and "ends_sentence" not in printed


def test_short_cells_stay_whole_where_the_long_ones_fold(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "70")
    ids = ["3f9a1c0d7e5b2a64", "2026-11-22 10:11:12"]
    print_rows(("trajectory_id", "created_at", "thinking"), [[ids[0], ids[1], "word " * 40]])
    lines = capsys.readouterr().out.splitlines()
    assert any(ids[0] in line and ids[1] in line for line in lines)
    assert max(len(line) for line in lines) <= 70 and len(lines) > 5  # the thinking folded to fit
