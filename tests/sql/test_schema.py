"""Stores migrate: a file written by an older reer opens, keeps its rows and takes new ones."""

from __future__ import annotations

import duckdb

from reer.settings import SearchConfig
from reer.store import Store
from reer.tasks.ingest import select_pending

OLD_CHECKS = """
CREATE SEQUENCE check_seq;
CREATE TABLE checks (
    check_id BIGINT PRIMARY KEY DEFAULT nextval('check_seq'), run_id VARCHAR NOT NULL,
    trajectory_id VARCHAR NOT NULL, suite VARCHAR NOT NULL, check_name VARCHAR NOT NULL,
    passed BOOLEAN NOT NULL, observed DOUBLE, threshold DOUBLE, detail VARCHAR,
    created_at TIMESTAMPTZ DEFAULT current_timestamp);
INSERT INTO checks (run_id, trajectory_id, suite, check_name, passed) VALUES ('old', 't', 'basic', 'ends_a_sentence', true);
"""


def test_an_old_checks_table_gains_the_new_columns(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(OLD_CHECKS)
    con.close()
    for _ in range(2):  # opening twice must be as good as once
        store = Store(path)
        store.write(
            "checks",
            [
                {
                    "run_id": "new",
                    "example_id": "e",
                    "validation_id": "v",
                    "suite": "examples",
                    "check_name": "query_duplicate",
                    "passed": False,
                    "observed": 1.0,
                }
            ],
        )
        rows = store.query("SELECT run_id, trajectory_id, example_id FROM checks ORDER BY check_id").rows()
        store.close()
    assert rows == [("old", "t", None), ("new", None, "e"), ("new", None, "e")]


def test_unvalidated_rows_stay_out_of_the_verdict_views(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    try:
        store.write(
            "checks", [{"run_id": "r", "trajectory_id": "t", "suite": "basic", "check_name": "x", "passed": True}]
        )
        assert store.query("SELECT count(*) AS n FROM latest_checks")["n"][0] == 0
    finally:
        store.close()


# runs and trajectories as reer wrote them before model fingerprints, with one finished trajectory.
OLD_RUNS_AND_TRAJECTORIES = """
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY, flow_run_id VARCHAR, flow_name VARCHAR, config JSON, config_hash VARCHAR,
    generator_model VARCHAR, scorer_model VARCHAR, backend VARCHAR, dtype VARCHAR, prompt_version VARCHAR,
    code_version VARCHAR, started_at TIMESTAMPTZ DEFAULT current_timestamp);
CREATE TABLE trajectories (
    trajectory_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, config_hash VARCHAR,
    prompt_version VARCHAR, generator_model VARCHAR, scorer_model VARCHAR, seed UBIGINT, language VARCHAR,
    start VARCHAR, created_at TIMESTAMPTZ DEFAULT current_timestamp, PRIMARY KEY (trajectory_id, run_id));
CREATE TABLE outcomes (
    trajectory_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, status VARCHAR NOT NULL, reason VARCHAR NOT NULL,
    final_revision_id VARCHAR, initial_score DOUBLE, final_score DOUBLE, steps INTEGER, accepted_edits INTEGER,
    segments INTEGER, created_at TIMESTAMPTZ DEFAULT current_timestamp);
CREATE TABLE examples (
    example_id VARCHAR PRIMARY KEY, query VARCHAR NOT NULL, reference VARCHAR NOT NULL, source VARCHAR,
    source_record VARCHAR, category VARCHAR, language VARCHAR, run_id VARCHAR,
    created_at TIMESTAMPTZ DEFAULT current_timestamp);
INSERT INTO runs (run_id, flow_name, generator_model, scorer_model, backend, dtype)
    VALUES ('old', 'synthesize', 'checkpoint-500', 'checkpoint-500', 'transformers', 'bfloat16');
INSERT INTO examples (example_id, query, reference, source, source_record, language)
    VALUES ('e', 'Write.', 'A reference.', 'notes.jsonl', 'line 1', 'en');
INSERT INTO trajectories (trajectory_id, run_id, example_id, config_hash, prompt_version, generator_model,
    scorer_model, start) VALUES ('t-old', 'old', 'e', '{config_hash}', 'p1', 'checkpoint-500', 'checkpoint-500', 'new');
INSERT INTO outcomes (trajectory_id, run_id, status, reason) VALUES ('t-old', 'old', 'completed', 'below_tau');
"""


def test_old_runs_and_trajectories_gain_role_and_fingerprint_columns_and_old_work_is_not_trusted(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(OLD_RUNS_AND_TRAJECTORIES.format(config_hash=SearchConfig().fingerprint()))
    con.close()
    for _ in range(2):  # opening twice must be as good as once
        store = Store(path)
        old_run = store.query("SELECT * FROM run_overview WHERE run_id = 'old'").to_dicts()[0]
        old = store.query("SELECT * FROM trajectories WHERE trajectory_id = 't-old'").to_dicts()[0]
        # Which weights 'checkpoint-500' named then is unknown: NULL, and no fingerprint finds it finished.
        assert old_run["backend"] == "transformers" and old_run["generator_fingerprint"] is None
        assert old_run["generator_backend"] is None and old_run["scorer_dtype"] is None
        assert old["generator_model"] == "checkpoint-500" and old["generator_fingerprint"] is None
        pending = select_pending.fn(store, SearchConfig(), "p1", "f" * 16, "f" * 16).examples
        assert [e.example_id for e in pending] == ["e"]
        store.write(
            "trajectories",
            [{"trajectory_id": "t-new", "run_id": "new", "example_id": "e", "generator_fingerprint": "f" * 16}],
        )
        store.write("runs", [{"run_id": "new", "generator_backend": "served", "scorer_dtype": "float32"}])
        store.close()
    store = Store(path)
    assert store.query("SELECT count(*) AS n FROM trajectories")["n"][0] == 2
    assert store.query("SELECT generator_backend FROM run_overview WHERE run_id = 'new'").rows() == [("served",)]
    store.close()


def test_an_old_outcomes_table_gains_its_note(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE outcomes (trajectory_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, status VARCHAR NOT NULL, "
        "reason VARCHAR NOT NULL, final_revision_id VARCHAR, initial_score DOUBLE, final_score DOUBLE, steps INTEGER, "
        "accepted_edits INTEGER, segments INTEGER, created_at TIMESTAMPTZ DEFAULT current_timestamp);"
        "INSERT INTO outcomes (trajectory_id, run_id, status, reason) VALUES ('old', 'r', 'completed', 'below_tau')"
    )
    con.close()
    store = Store(path)
    try:
        note = "the rewrite of segment 2 needs 9000 tokens (its prompt and 160 new ones); the generator reads 8192"
        store.write(
            "outcomes",
            [{"trajectory_id": "new", "run_id": "r", "status": "rejected", "reason": "context_overflow", "note": note}],
        )
        assert store.query("SELECT trajectory_id, note FROM outcomes ORDER BY trajectory_id").rows() == [
            ("new", note),
            ("old", None),
        ]
    finally:
        store.close()
