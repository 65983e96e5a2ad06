"""The store's snapshot for readers: whole, readable while the writer works, and the writer keeps its lock;
a second writer is refused up front."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from reer.store import Store, StoreBusy, read_only_query, refuse_if_held, snapshot_path

OPEN_READ_ONLY = "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True)"


def test_a_snapshot_is_whole_and_the_writer_keeps_its_lock(tmp_path, capfd):
    db = tmp_path / "reer.duckdb"
    store = Store(db)
    try:
        store.write("run_events", [{"run_id": "r1", "status": "running"}])
        published = store.publish_snapshot()
        assert published == snapshot_path(db) == tmp_path / "reer.snapshot.duckdb"
        # Another process still cannot open the database: the snapshot did not drop the lock.
        other = subprocess.run([sys.executable, "-c", OPEN_READ_ONLY, str(db)], capture_output=True, text=True)
        assert other.returncode != 0 and "lock" in other.stderr.lower()
        # A reader in another process gets the snapshot, with one line saying so.
        reader = subprocess.run(
            [
                sys.executable,
                "-c",
                "from reer.store import read_only_query; import sys; "
                "print(read_only_query(sys.argv[1], 'SELECT count(*) AS n FROM run_events')['n'][0])",
                str(db),
            ],
            capture_output=True,
            text=True,
        )
        assert reader.stdout.strip() == "1" and "reading its snapshot" in reader.stderr
        con = duckdb.connect(str(published), read_only=True)
        assert con.sql("SELECT count(*) FROM run_overview").fetchall() == [(0,)]  # views came along
        con.close()
    finally:
        store.drop_snapshot()
        store.close()
    assert not snapshot_path(db).exists()
    assert read_only_query(db, "SELECT count(*) AS n FROM run_events")["n"][0] == 1


READ_EVENTS = (
    "from reer.store import read_only_query, StoreBusy; import sys\n"
    "try: print(read_only_query(sys.argv[1], 'SELECT count(*) AS n FROM run_events')['n'][0])\n"
    "except StoreBusy: print('busy')"
)


def test_a_snapshot_left_by_a_killed_writer_is_never_served_as_the_next_writers(tmp_path):
    db = tmp_path / "reer.duckdb"
    killed = Store(db)
    killed.write("run_events", [{"run_id": "r1", "status": "running"}])
    killed.publish_snapshot()
    killed.close()  # as after kill -9: the snapshot stays behind
    assert snapshot_path(db).exists()
    writer = Store(db)
    try:
        writer.write("run_events", [{"run_id": "r2", "status": "running"}])
        reader = [sys.executable, "-c", READ_EVENTS, str(db)]
        # Until the new writer publishes, readers hear that the store is busy, not r1's rows as current.
        assert subprocess.run(reader, capture_output=True, text=True).stdout.strip() == "busy"
        writer.publish_snapshot()
        fresh = subprocess.run(reader, capture_output=True, text=True)
        assert fresh.stdout.strip() == "2" and " s old" in fresh.stderr
    finally:
        writer.drop_snapshot()
        writer.close()


HOLD_AS_WRITER = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)"
)


def test_a_second_writer_is_refused_before_it_opens_the_store(tmp_path):
    db = tmp_path / "reer.duckdb"
    refuse_if_held(db)  # no file yet: nothing holds it
    duckdb.connect(str(db)).close()
    refuse_if_held(db)  # a file nobody holds
    # A `reer run` (here a script named reer, as `python .venv/bin/reer run` shows in /proc), then any other program.
    script = tmp_path / "reer"
    script.write_text(HOLD_AS_WRITER)
    for command, expected in (
        ([str(script), str(db)], r"held by another reer process \(PID {pid}\) that is writing to it; wait"),
        (["-c", HOLD_AS_WRITER, str(db)], r"is open in another process \(PID {pid}: python -c \.\.\. .*reer.duckdb\)"),
    ):
        writer = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "held"
            with pytest.raises(StoreBusy, match=expected.format(pid=writer.pid)):
                refuse_if_held(db)
        finally:
            writer.kill()
            writer.wait()
    refuse_if_held(db)  # the writer is gone


def test_a_key_that_is_not_a_column_fails_loudly_and_writes_nothing(tmp_path):
    from reer.store import UnknownColumns

    store = Store(tmp_path / "reer.duckdb")
    try:
        with pytest.raises(UnknownColumns, match="run_events has no column stauts"):
            store.write("run_events", [{"run_id": "r1", "status": "running"}, {"run_id": "r2", "stauts": "running"}])
        assert store.query("SELECT count(*) AS n FROM run_events")["n"][0] == 0
        assert store.write("run_events", [{"run_id": "r1", "status": "running", "detail": {"a": 1}}]) == 1
        assert store.query("SELECT detail FROM run_events")["detail"][0] == '{"a": 1}'
    finally:
        store.close()


def _tries_to_write(db, tmp_path) -> dict[str, str]:
    """Statements a read-only reader must refuse, each writing a file or changing a setting."""
    return {
        "copy over the store": f"COPY (SELECT 1 AS a) TO '{db}'",
        "copy to a file": f"COPY (SELECT 1 AS a) TO '{tmp_path / 'out.csv'}'",
        "export": f"EXPORT DATABASE '{tmp_path / 'exported'}'",
        "attach for writing": f"ATTACH '{tmp_path / 'other.duckdb'}' AS other (READ_WRITE)",
        "read a file": "SELECT * FROM read_csv('/etc/hostname')",
        "set": "SET threads = 1",
        "install": "INSTALL httpfs",
    }


def _assert_read_only(db, tmp_path) -> None:
    size = db.stat().st_size
    for what, statement in _tries_to_write(db, tmp_path).items():
        with pytest.raises(duckdb.Error):
            read_only_query(db, statement)
            pytest.fail(f"{what} was allowed: {statement}")
    assert db.stat().st_size == size
    assert not any((tmp_path / name).exists() for name in ("out.csv", "exported", "other.duckdb"))
    # The store's own tables and views still read.
    assert read_only_query(db, "SELECT count(*) AS n FROM run_events")["n"][0] == 1
    assert read_only_query(db, "SELECT count(*) AS n FROM run_overview")["n"][0] == 0  # no run row: none


def test_a_reader_writes_no_file_and_changes_no_setting(tmp_path):
    db = tmp_path / "reer.duckdb"
    store = Store(db)
    store.write("run_events", [{"run_id": "r1", "status": "running"}])
    store.close()
    _assert_read_only(db, tmp_path)


def test_a_reader_of_the_snapshot_writes_no_file_either(tmp_path, capfd):
    db = tmp_path / "reer.duckdb"
    store = Store(db)
    store.write("run_events", [{"run_id": "r1", "status": "running"}])
    store.publish_snapshot()
    store.close()  # the snapshot stays, as while a run writes
    writer = subprocess.Popen([sys.executable, "-c", HOLD_AS_WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "held"
        _assert_read_only(snapshot_path(db), tmp_path)
        assert read_only_query(db, "SELECT count(*) AS n FROM run_events")["n"][0] == 1
        assert "reading its snapshot" in capfd.readouterr().err
        with pytest.raises(duckdb.Error):
            read_only_query(db, f"COPY (SELECT 1 AS a) TO '{tmp_path / 'out.csv'}'")
        assert not (tmp_path / "out.csv").exists()
    finally:
        writer.kill()
        writer.wait()


HOLD_AS_READER = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); print('held', flush=True); "
    "time.sleep(60)"
)


def test_a_reader_in_another_process_is_named_by_its_pid(tmp_path):
    db = tmp_path / "reer.duckdb"
    Store(db).close()
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_AS_READER, str(db), "notebook.py"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "held"
        refuse_if_held(db)  # it opens read-only, which a reader allows; the writer's Store is what it stops
        with pytest.raises(StoreBusy) as refused:
            Store(db)
    finally:
        reader.kill()
        reader.wait()
    message = str(refused.value)
    assert f"reer.duckdb is open in another process (PID {reader.pid}: python" in message, message
    assert "notebook.py" in message and "close it or wait for it to finish" in message
    assert "reer process that is writing" not in message and "\n" not in message
    Store(db).close()  # the reader is gone


def test_a_store_in_a_folder_with_a_quote_publishes_a_snapshot(tmp_path):
    folder = tmp_path / "it's here"
    folder.mkdir()
    store = Store(folder / "reer.duckdb")
    try:
        store.write("run_events", [{"run_id": "r1", "status": "running"}])
        published = store.publish_snapshot()
    finally:
        store.close()
    con = duckdb.connect(str(published), read_only=True)
    try:
        assert con.sql("SELECT count(*) FROM run_events").fetchall() == [(1,)]
    finally:
        con.close()


def test_an_item_prefix_is_matched_literally_not_as_a_like_pattern(tmp_path):
    from reer.sql import read_sql
    from tests.tasks.crafted import CLEAN, fill_store

    db = tmp_path / "reer.duckdb"
    fill_store(db, [CLEAN["a"], CLEAN["b"]]).close()
    sql = read_sql("queries/item_revisions")
    assert set(read_only_query(db, sql, item="traj-a")["trajectory_id"]) == {"traj-a"}
    assert set(read_only_query(db, sql, item="ex-b")["trajectory_id"]) == {"traj-b"}
    for pattern in ("_", "%", "traj_a", "traj%"):  # no id has an underscore or a percent sign
        assert read_only_query(db, sql, item=pattern).height == 0, pattern


KILLED_WRITER = """
import os, sys
from reer.store import Store
store = Store(sys.argv[1])
store.write("checks", [{"run_id": "r1", "suite": "examples", "check_name": "x", "passed": True}])
os._exit(9)  # as after kill -9: no close, no checkpoint; the write lives in the WAL only
"""


def test_a_store_left_by_a_killed_writer_opens_again_with_its_rows(tmp_path):
    # DuckDB 1.4.4 cannot replay a WAL holding the schema's `ALTER ... DROP NOT NULL` of a table
    # whose key defaults to a sequence: the store checkpoints its schema before any write.
    db = tmp_path / "reer.duckdb"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], check=False)
    assert db.with_name("reer.duckdb.wal").exists()
    store = Store(db)
    try:
        assert store.query("SELECT count(*) AS n FROM checks")["n"][0] == 1
    finally:
        store.close()
