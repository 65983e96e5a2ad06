"""The `checks` table migrates: a file written before input checks opens, keeps its rows and takes new ones."""

from __future__ import annotations

import duckdb

from reer.store import Store

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
