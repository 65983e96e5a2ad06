"""Export: training files that `datasets` loads, rows that round-trip to the store, a card that matches SQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from reer.tasks.export import NotValidated, solution_text, write_export
from reer.tasks.quality import QualityConfig, validate
from tests.tasks.crafted import CLEAN, THIRD, fill_store

FAILING = {**CLEAN["b"], "initial_finish_reason": "length"}  # cut by the token limit: fails thinking_closed


@pytest.fixture()
def exported(tmp_path):
    store = fill_store(
        tmp_path / "x.duckdb",
        [CLEAN["a"], FAILING, THIRD],
        categories={"ex-a": "fiction", "ex-b": "fiction", "ex-c": "poetry"},
    )
    validate(store, "run-1", QualityConfig(), tmp_path / "out" / "run-1" / "data_docs")
    written = write_export(store, "run-1", tmp_path / "out")
    yield store, written, tmp_path
    store.close()


def load(path, kind, cache):
    """A local file through `datasets`, never the hub."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    from datasets import load_dataset

    return load_dataset(kind, data_files=str(path), split="train", cache_dir=str(cache))


def stored(store, fmt: str) -> list[dict]:
    """What `exports` says sits at each row of a file, with the stored texts."""
    return store.query(
        "SELECT e.row_index, e.revision_id, e.trajectory_id, e.example_id, v.thinking, x.query, x.reference "
        "FROM exports e JOIN revisions v USING (revision_id) JOIN examples x USING (example_id) "
        "WHERE e.format = $fmt ORDER BY e.row_index",
        fmt=fmt,
    ).to_dicts()


def test_the_training_parquet_holds_the_passing_rows_in_deepwriting_layout(exported):
    store, written, tmp = exported
    data = load(written.paths()["parquet"], "parquet", tmp / "hf")
    assert data.num_rows == written.train_rows == 2
    assert {"prompt", "solution", "category", "source", "final_score", "trajectory_id", "revision_id"} <= set(
        data.column_names
    )
    rows = stored(store, "parquet")
    assert [r["row_index"] for r in rows] == list(range(2))
    for record, row in zip(data, rows):
        assert record["revision_id"] == row["revision_id"] and record["trajectory_id"] == row["trajectory_id"]
        assert record["prompt"] == [{"role": "user", "content": row["query"]}]
        assert record["solution"] == f"<think>\n{row['thinking']}\n</think>\n{row['reference']}"
    assert "traj-b" not in data["trajectory_id"]


def test_the_jsonl_holds_chat_messages_that_round_trip(exported):
    store, written, tmp = exported
    data = load(written.paths()["jsonl"], "json", tmp / "hf")
    assert data.column_names == ["messages"] and data.num_rows == 2
    for record, row in zip(data, stored(store, "jsonl")):
        user, assistant = record["messages"]
        assert user == {"role": "user", "content": row["query"]}
        assert assistant == {"role": "assistant", "content": solution_text(row["thinking"], row["reference"])}


def test_the_full_table_keeps_failures_with_their_reasons(exported):
    store, written, _ = exported
    full = pl.read_parquet(written.paths()["table"])
    assert full.height == 3
    failing = full.filter(pl.col("trajectory_id") == "traj-b").row(0, named=True)
    assert failing["passed"] is False and failing["failed_reasons"].startswith("thinking_closed (FAILED")
    assert set(stored(store, "table")[i]["trajectory_id"] for i in range(3)) == {"traj-a", "traj-b", "traj-c"}


def card_table(card: str, heading: str) -> list[list[str]]:
    """The body rows of the first pipe table under a heading of the card."""
    section = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_the_card_numbers_equal_the_sql_counts(exported):
    store, written, _ = exported
    card = Path(written.paths()["card"]).read_text(encoding="utf-8")
    categories = store.query(
        "SELECT coalesce(x.category, '(none)') AS category, count(*) AS completed, "
        "count(*) FILTER (WHERE p.trajectory_id IS NOT NULL) AS passed "
        "FROM outcomes o JOIN trajectories t USING (trajectory_id, run_id) JOIN examples x USING (example_id) "
        "LEFT JOIN passed_trajectories p USING (trajectory_id, run_id) WHERE o.status = 'completed' GROUP BY ALL"
    )
    expected = {r[0]: [str(r[1]), str(r[2])] for r in categories.rows()}
    assert (
        {r[0]: r[1:] for r in card_table(card, "Trajectories per category")}
        == expected
        == {"fiction": ["2", "1"], "poetry": ["1", "1"]}
    )
    checks = store.query(
        "SELECT check_name, count(*) AS n, count(*) FILTER (WHERE passed) AS ok FROM checks GROUP BY ALL"
    )
    in_card = {r[1]: (r[3], r[4], r[5]) for r in card_table(card, "Checks")}
    assert {k: v[:2] for k, v in in_card.items()} == {name: (str(n), str(ok)) for name, n, ok in checks.rows()}
    assert in_card["thinking_closed"][2] == f"{2 / 3:.4f}"
    passed = store.query("SELECT count(*) AS n FROM passed_trajectories")["n"][0]
    assert f"**{passed} of 3 completed trajectories passed every quality check**" in card
    files = {r[0]: r[1] for r in card_table(card, "Files")}
    assert files["train.parquet"] == files["train.jsonl"] == str(passed) and files["trajectories.parquet"] == "3"
    scores = {(r[0], r[1]): r for r in card_table(card, "Scores")}
    mean_final = store.query("SELECT avg(final_score) AS m FROM passed_trajectories")["m"][0]
    assert scores[("passed", "final_score")][2] == str(passed)
    assert scores[("passed", "final_score")][3] == f"{mean_final:.4f}"
    assert "prompt_version | v1-test" in card and card.startswith("---\nconfigs:")


def test_every_exported_row_is_recorded(exported):
    store, written, _ = exported
    counts = dict(store.query("SELECT format, count(*) FROM exports GROUP BY ALL").rows())
    assert counts == {"parquet": 2, "jsonl": 2, "table": 3}
    lines = Path(written.paths()["jsonl"]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all("messages" in json.loads(line) for line in lines)


def test_an_unvalidated_run_is_not_exported(tmp_path):
    store = fill_store(tmp_path / "x.duckdb", [CLEAN["a"]])
    try:
        with pytest.raises(NotValidated, match="reer validate run-1"):
            write_export(store, "run-1", tmp_path / "out")
    finally:
        store.close()


def test_a_run_with_nothing_to_check_exports_empty_files_and_says_so(tmp_path):
    store = fill_store(tmp_path / "x.duckdb", [])  # e.g. a second run whose items were all done already
    try:
        result = validate(store, "run-1", QualityConfig(), tmp_path / "out" / "run-1" / "data_docs")
        written = write_export(store, "run-1", tmp_path / "out")
        assert result.trajectories == 0 and written.train_rows == written.full_rows == 0
        card = Path(written.paths()["card"]).read_text(encoding="utf-8")
        assert "No trajectory passed every check" in card
        assert store.query("SELECT count(*) AS n FROM validations")["n"][0] == 1
    finally:
        store.close()
