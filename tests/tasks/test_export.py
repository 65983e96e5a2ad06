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


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_exporting_again_replaces_the_files_and_adds_no_rows(exported):
    store, written, tmp = exported
    before = files_of(written.folder)
    again = write_export(store, "run-1", tmp / "out")
    counts = dict(store.query("SELECT format, count(*) FROM exports GROUP BY ALL").rows())
    assert counts == {"parquet": 2, "jsonl": 2, "table": 3}
    lineage = store.query("SELECT count(*) AS n FROM lineage WHERE export_path IS NOT NULL")["n"][0]
    assert lineage == 7  # one row per exported line, not one per export
    assert files_of(again.folder) == before
    assert sorted(p.name for p in again.folder.iterdir()) == [
        "README.md",
        "data_docs",
        "manifest.json",
        "train.jsonl",
        "train.parquet",
        "trajectories.parquet",
    ]  # no temporary folder or file left beside them


def test_the_manifest_is_written_last_and_names_every_file_with_rows_and_sha256(exported):
    import hashlib

    _, written, _ = exported
    manifest_path = written.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["run_id"] == "run-1" and manifest["complete"] is True
    files = manifest["files"]
    assert {f["path"] for f in files} == {"train.parquet", "train.jsonl", "trajectories.parquet", "README.md"}
    for f in files:
        data = (written.folder / f["path"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
        assert manifest_path.stat().st_mtime_ns >= (written.folder / f["path"]).stat().st_mtime_ns
    assert {f["path"]: f["rows"] for f in files if f["rows"] is not None} == {
        "train.parquet": 2,
        "train.jsonl": 2,
        "trajectories.parquet": 3,
    }


def test_a_crash_while_writing_leaves_the_previous_export_whole(exported, monkeypatch):
    store, written, tmp = exported
    before = files_of(written.folder)

    def half_then_fail(self, file, *args, **kwargs):  # the disk fills up halfway through train.jsonl
        Path(file).write_text('{"messages": [{"role": "user", "content": "half"}]}\n', encoding="utf-8")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_ndjson", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_export(store, "run-1", tmp / "out")
    assert files_of(written.folder) == before
    assert [p.name for p in written.folder.iterdir() if p.name.startswith(".")] == []
    assert dict(store.query("SELECT format, count(*) FROM exports GROUP BY ALL").rows())["jsonl"] == 2


def test_an_export_cut_while_moving_its_files_into_place_has_no_manifest(exported, monkeypatch):
    store, written, tmp = exported
    real_replace, moved = os.replace, []

    def replace_two_then_die(src, dst):
        if len(moved) == 2:
            raise KeyboardInterrupt  # killed between two renames
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_two_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_export(store, "run-1", tmp / "out")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (written.folder / "manifest.json").exists()  # no manifest: not a complete export
    again = write_export(store, "run-1", tmp / "out")  # the next export finishes the job and tidies up
    assert (again.folder / "manifest.json").exists()
    assert [p.name for p in again.folder.iterdir() if p.name.startswith(".")] == []
