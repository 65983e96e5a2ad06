"""great-expectations on small hand-made metric tables: which ids fail which bound, and the Data Docs.

test_quality.py judges the real metric tables check by check; here the glue itself, with checks made up for it.
"""

from __future__ import annotations

import polars as pl
import pytest

from reer.tasks.expectations import Outcome, ValidationError, expectation, validate_tables
from reer.tasks.quality import CheckSpec

MAX_REPEAT = CheckSpec("things", "repeat", "max", 0.2, "share repeated")
MIN_TOKENS = CheckSpec("things", "tokens", "min", 100, "tokens, at least")
MIN_SCORE = CheckSpec("others", "score", "min", 0.5, "score, at least")


def things(rows: list[tuple[str, float | None, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"thing_id": pl.Utf8, "repeat": pl.Float64, "tokens": pl.Float64}, orient="row")


def test_rows_over_a_bound_fail_with_their_ids_and_rows_within_pass():
    frame = things(
        [
            ("ok", 0.1, 150.0),
            ("at-bounds", 0.2, 100.0),  # both bounds are inclusive
            ("too-repetitive", 0.21, 150.0),
            ("too-short", 0.0, 99.0),
            ("both", 0.9, 10.0),
        ]
    )
    outcome = validate_tables({"things": (frame, "thing_id")}, [MAX_REPEAT, MIN_TOKENS], None, run_name="t")
    assert isinstance(outcome, Outcome)
    assert outcome.failing == {"repeat": {"too-repetitive", "both"}, "tokens": {"too-short", "both"}}
    assert outcome.data_docs is None


def test_a_missing_value_is_not_applicable_and_passes():
    frame = things([("unknown", None, None), ("bad", 0.5, 150.0)])
    outcome = validate_tables({"things": (frame, "thing_id")}, [MAX_REPEAT, MIN_TOKENS], None, run_name="t")
    assert outcome.failing == {"repeat": {"bad"}, "tokens": set()}


def test_each_suite_is_judged_only_by_its_own_checks_and_key():
    others = pl.DataFrame({"other_id": ["o1", "o2"], "score": [0.4, 0.6], "repeat": [0.9, 0.9]})
    tables = {"things": (things([("t1", 0.3, 150.0)]), "thing_id"), "others": (others, "other_id")}
    outcome = validate_tables(tables, [MAX_REPEAT, MIN_TOKENS, MIN_SCORE], None, run_name="t")
    # others' repeat column is not a check of its suite: o1 and o2 fail nothing for it
    assert outcome.failing == {"repeat": {"t1"}, "tokens": set(), "score": {"o1"}}


def test_an_empty_table_or_a_suite_without_checks_is_skipped_but_every_check_is_answered():
    empty = things([])
    unchecked = pl.DataFrame({"x_id": ["x1"], "repeat": [1.0]})
    tables = {"things": (empty, "thing_id"), "unchecked": (unchecked, "x_id")}
    outcome = validate_tables(tables, [MAX_REPEAT, MIN_TOKENS, MIN_SCORE], None, run_name="t")
    assert outcome.failing == {"repeat": set(), "tokens": set(), "score": set()}


def test_data_docs_are_written_when_a_folder_is_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = things([("ok", 0.1, 150.0), ("bad", 0.5, 150.0)])
    outcome = validate_tables({"things": (frame, "thing_id")}, [MAX_REPEAT, MIN_TOKENS], "docs", run_name="run-7")
    index = tmp_path / "docs" / "index.html"
    assert outcome.data_docs == str(index)  # absolute, though the folder was given relative
    assert index.is_file()
    pages = [p for p in (tmp_path / "docs").rglob("*.html") if p != index]
    assert any(p.name == "things.html" for p in pages)
    assert outcome.failing["repeat"] == {"bad"}  # the docs change nothing in the verdicts


def test_no_data_docs_without_a_folder_and_no_folder_left_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = validate_tables({"things": (things([("ok", 0.1, 150.0)]), "thing_id")}, [MAX_REPEAT], None, "t")
    assert outcome.data_docs is None and outcome.failing == {"repeat": set()}
    assert list(tmp_path.iterdir()) == []


def test_a_column_gx_cannot_compare_is_an_error_not_a_verdict():
    frame = pl.DataFrame({"thing_id": ["a", "b"], "repeat": ["high", "low"]})
    with pytest.raises(ValidationError, match="GX could not evaluate check repeat"):
        validate_tables({"things": (frame, "thing_id")}, [MAX_REPEAT], None, run_name="t")


def test_the_expectation_of_a_check_bounds_one_side_and_carries_its_name():
    upper, lower = expectation(MAX_REPEAT), expectation(MIN_TOKENS)
    assert (upper.column, upper.max_value, upper.min_value) == ("repeat", 0.2, None)
    assert (lower.column, lower.min_value, lower.max_value) == ("tokens", 100, None)
    assert upper.meta == {"check": "repeat"} and upper.description == "repeat: share repeated"
