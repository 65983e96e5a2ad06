"""A run's life in a real DuckDB file: its row, 'running', then completed | failed | interrupted | crashed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import duckdb
import pytest

from reer.flows.runs import complete_run, mark_crashed, new_run_id, recorded_run, run_row
from reer.settings import Settings
from reer.store import Store

RUN = {"run_id": "run-1", "flow_name": "synthesize", "backend": "transformers", "config_hash": "cfg"}


def events(db, run_id: str = "run-1") -> list[tuple[str, dict | None]]:
    """The run's status changes in the order they were written, read as another process would."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.sql(
            "SELECT status, detail FROM run_events WHERE run_id = $r ORDER BY created_at, rowid", params={"r": run_id}
        ).fetchall()
    finally:
        con.close()
    return [(status, json.loads(detail) if detail else None) for status, detail in rows]


def latest_status(store: Store, run_id: str) -> str:
    return store.query("SELECT status FROM run_overview WHERE run_id = $run_id", run_id=run_id)["status"][0]


def is_closed(db) -> bool:
    """Another process can open the file for writing only once the store's engine let it go."""
    child = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()", str(db)],
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0 or "lock" in child.stderr.lower(), child.stderr[-1000:]
    return child.returncode == 0


# -- run ids -------------------------------------------------------------------------------------


def test_a_run_id_is_its_start_time_and_a_random_suffix():
    run_id = new_run_id()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{12}", run_id)
    assert abs(time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S")) - time.time()) < 5


def test_run_ids_sort_by_start_time_and_are_unique():
    first = new_run_id()
    time.sleep(1.05)  # the time part has whole seconds
    later = [new_run_id() for _ in range(2000)]
    assert all(first < other for other in later)
    assert len(set(later)) == len(later)


def test_a_run_records_each_roles_backend_dtype_and_model_fingerprint(tmp_path):
    settings = Settings(scorer_backend="served", scorer_url="http://127.0.0.1:9", dtype="float32")
    generator = SimpleNamespace(model_id="checkpoint-500", fingerprint="a" * 16, dtype="float32")
    scorer = SimpleNamespace(model_id="checkpoint-500", fingerprint="b" * 16)  # served: no dtype of its own
    store = Store(tmp_path / "reer.duckdb")
    store.write("runs", [run_row("run-1", "synthesize", settings, generator, scorer, "p1")])
    store.write("runs", [run_row("run-2", "ingest", settings, None, None, "q1")])  # ingest without the model
    roles = [f"{role}_{column}" for role in ("generator", "scorer") for column in ("backend", "dtype", "fingerprint")]
    rows = store.query(f"SELECT run_id, {', '.join(roles)} FROM run_overview ORDER BY run_id").rows()
    store.close()
    assert rows == [
        ("run-1", "transformers", "float32", "a" * 16, "served", None, "b" * 16),
        ("run-2", None, None, None, None, None, None),
    ]


# -- recorded_run --------------------------------------------------------------------------------


def test_a_run_is_stored_as_running_and_the_store_is_closed_after(tmp_path):
    db = tmp_path / "reer.duckdb"
    store = Store(db)
    with recorded_run(store, RUN):
        stored = store.query("SELECT run_id, flow_name, backend, config_hash FROM runs").to_dicts()
        assert stored == [RUN]
        assert latest_status(store, "run-1") == "running"
        assert not is_closed(db)  # the run holds the file while it works
    assert is_closed(db)
    assert events(db) == [("running", None)]


def test_an_error_stores_failed_with_the_message_and_is_raised(tmp_path):
    db = tmp_path / "reer.duckdb"
    with pytest.raises(RuntimeError, match="the scorer ran out of memory"), recorded_run(Store(db), RUN):
        raise RuntimeError("the scorer ran out of memory")
    assert events(db) == [("running", None), ("failed", {"error": "the scorer ran out of memory"})]
    assert is_closed(db)


def test_ctrl_c_stores_interrupted_and_is_raised(tmp_path):
    db = tmp_path / "reer.duckdb"
    with pytest.raises(KeyboardInterrupt), recorded_run(Store(db), RUN):
        raise KeyboardInterrupt
    assert events(db) == [("running", None), ("interrupted", None)]
    assert is_closed(db)


def test_a_completed_run_keeps_its_summary_as_the_completed_detail(tmp_path):
    db = tmp_path / "reer.duckdb"
    store = Store(db)
    summary = {"items": 3, "completed": 2, "mean_final_score": 0.61, "rejects_by_reason": [{"reason": "x", "n": 1}]}
    with recorded_run(store, RUN):
        complete_run(store, "run-1", summary)
        assert latest_status(store, "run-1") == "completed"
    assert events(db) == [("running", None), ("completed", summary)]
    with duckdb.connect(str(db), read_only=True) as con:
        ((detail,),) = con.sql("SELECT detail FROM run_overview WHERE run_id = 'run-1'").fetchall()
    assert json.loads(detail) == summary


def test_the_snapshot_for_readers_is_dropped_when_the_run_ends(tmp_path):
    db = tmp_path / "reer.duckdb"
    store = Store(db)
    with pytest.raises(ValueError), recorded_run(store, RUN):
        snapshot = store.publish_snapshot()
        assert snapshot.exists()
        raise ValueError("stop")
    assert not snapshot.exists()


# -- crashed runs --------------------------------------------------------------------------------


def test_mark_crashed_marks_only_runs_still_running(tmp_path):
    store = Store(tmp_path / "reer.duckdb")
    try:
        store.write("runs", [{"run_id": r, "flow_name": "synthesize"} for r in ("dead", "done", "failed", "never")])
        store.write("run_events", [{"run_id": r, "status": "running"} for r in ("dead", "done", "failed")])
        store.write("run_events", [{"run_id": "done", "status": "completed"}, {"run_id": "failed", "status": "failed"}])
        assert mark_crashed(store) == ["dead"]
        statuses = dict(store.query("SELECT run_id, status FROM run_overview").rows())
        assert statuses == {"dead": "crashed", "done": "completed", "failed": "failed", "never": None}
        (detail,) = store.query("SELECT detail FROM run_events WHERE status = 'crashed'")["detail"]
        assert json.loads(detail) == {"found_by": "the next run on this database"}
        assert mark_crashed(store) == []  # once crashed, it stays so
        assert store.query("SELECT count(*) AS n FROM run_events WHERE status = 'crashed'")["n"][0] == 1
    finally:
        store.close()


def test_the_next_run_marks_a_run_that_died_as_crashed(tmp_path):
    db = tmp_path / "reer.duckdb"
    died = Store(db)
    died.write("runs", [{**RUN, "run_id": "run-0"}])
    died.write("run_events", [{"run_id": "run-0", "status": "running"}])
    died.close()  # the process was killed: no status after 'running'
    with recorded_run(Store(db), RUN):
        pass
    assert [s for s, _ in events(db, "run-0")] == ["running", "crashed"]
    assert events(db, "run-1") == [("running", None)]
