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


HOLD_AS_WRITER = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)"
)


def test_a_second_writer_is_refused_before_it_opens_the_store(tmp_path):
    db = tmp_path / "reer.duckdb"
    refuse_if_held(db)  # no file yet: nothing holds it
    duckdb.connect(str(db)).close()
    refuse_if_held(db)  # a file nobody holds
    writer = subprocess.Popen([sys.executable, "-c", HOLD_AS_WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match="held by another reer process"):
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
