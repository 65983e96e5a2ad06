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


PWNED = "\x1b]0;pwned\x07"  # sets the terminal's title


def assert_no_control(printed: str) -> None:
    bad = [c for c in printed if c not in "\n\t" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)]
    assert not bad, repr(printed)


def test_stored_text_reaches_the_terminal_without_control_sequences(capsys, monkeypatch):
    from reer.cli.rendering import clean

    assert clean(f"a{PWNED}b\x1b[31mred\x1b[0m\x9b2J\x00c\td\r\ne") == "ab" + "red" + "2Jc\td\ne"
    assert clean("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"  # OSC 8 ends with ESC \
    assert clean("第一段\n\u3000第二段 é") == "第一段\n\u3000第二段 é"
    monkeypatch.setenv("COLUMNS", "100")
    print_rows((f"name{PWNED}", "text"), [[f"id{PWNED}", f"line one{PWNED}\nline two\x1b[2J"]])
    printed = capsys.readouterr().out
    assert_no_control(printed)
    assert "pwned" not in printed and "id" in printed and "line one" in printed and "line two" in printed
    assert not any("line one" in line and "line two" in line for line in printed.splitlines())  # still two lines


def test_an_items_revisions_print_without_control_sequences(capsys, monkeypatch):
    import polars as pl

    from reer.cli.rendering import print_revisions

    monkeypatch.setenv("COLUMNS", "160")
    row = {
        "trajectory_id": f"t1{PWNED}",
        "run_id": f"r1{PWNED}",
        "example_id": f"e1{PWNED}",
        "query": f"Write{PWNED} a poem",
        "kind": "initial",
        "step": 0,
        "segment_index": None,
        "candidate_index": None,
        "status": f"initial{PWNED}",
        "accepted": True,
        "score": 1.5,
        "nll": 0.4,
        "ppl": 1.5,
        "segment_text": None,
        "thinking": f"Okay{PWNED}, so\x1b[2J the poem",
    }
    print_revisions(pl.DataFrame([row]))
    printed = capsys.readouterr().out
    assert_no_control(printed)
    assert "pwned" not in printed and "Write a poem" in printed and "Okay, so the poem" in printed


def test_the_summary_folds_a_long_path_instead_of_cutting_it(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    report = "/data/reer-out/20261202-053714-ef52ff/a-folder-with-a-long-name/report.html"
    print_summary(RunSummary(run_id="r", db="reer.duckdb", report=report))
    rows = [line.split("│")[1:3] for line in capsys.readouterr().out.splitlines() if "│" in line]
    at = next(i for i, (name, _) in enumerate(rows) if name.strip() == "report")
    folded = [rows[at][1]] + [value for name, value in rows[at + 1 :] if not name.strip()][:2]
    assert report in "".join(part.strip() for part in folded) and not any("…" in value for _, value in rows)
