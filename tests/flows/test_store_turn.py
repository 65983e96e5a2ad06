"""Deployment runs of one store wait their turn on a Prefect concurrency limit, and for writers outside it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from reer.flows.store_turn import ensure_slot, slot_name, wait_for_writer
from reer.store import Store, StoreBusy
from tests.conftest import stored_rows

HOLD = "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(float(sys.argv[2]))"


def hold_store(db, seconds: float) -> subprocess.Popen:
    """Another process that writes `db` for `seconds` (a notebook, a `reer run` at a terminal)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_queued_run_waits_for_a_writer_outside_the_queue_and_says_so(tmp_path):
    db = tmp_path / "reer.duckdb"
    Store(db).close()
    holder = hold_store(db, 3)
    said: list[str] = []
    started = time.monotonic()
    store = wait_for_writer(db, 60, said.append, poll_seconds=0.5)
    store.close()
    holder.wait()
    assert time.monotonic() - started >= 2  # it waited for the holder instead of failing
    assert len(said) == 1 and said[0].startswith("waiting for the store:") and f"PID {holder.pid}" in said[0]


def test_a_queued_run_gives_up_after_store_wait_seconds_in_one_line(tmp_path):
    db = tmp_path / "reer.duckdb"
    Store(db).close()
    holder = hold_store(db, 30)
    try:
        with pytest.raises(StoreBusy, match=r"waited 1 s, store_wait_seconds") as refused:
            wait_for_writer(db, 1, lambda line: None, poll_seconds=0.5)
        assert "\n" not in str(refused.value)
    finally:
        holder.kill()
        holder.wait()


def test_the_slot_is_named_by_the_resolved_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert slot_name(tmp_path / "reer.duckdb") == slot_name("reer.duckdb") != slot_name(tmp_path / "other.duckdb")
    assert "/" not in slot_name("reer.duckdb")


QUEUED_RUN = """
import sys
from prefect import flow
from reer.flows.store_turn import open_store
from reer.settings import Settings

@flow
def write_one(db: str) -> None:
    store = open_store(Settings(db=db), queue=True)
    try:
        store.write("run_events", [{"run_id": "queued", "status": "running"}])
    finally:
        store.close()

write_one(sys.argv[1])
"""


@pytest.mark.prefect
def test_a_deployment_run_waits_for_the_slot_another_run_holds(tmp_path, prefect_api):
    from prefect.concurrency.sync import concurrency
    from prefect.settings import PREFECT_API_URL, temporary_settings

    db = tmp_path / "reer.duckdb"
    Store(db).close()
    name = slot_name(db)
    # Settings, not the environment: Prefect read its settings when an earlier test imported it.
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        assert ensure_slot(name) == 0
        with concurrency(name, occupy=1, strict=True):
            assert ensure_slot(name) == 1  # the dashboard's Concurrency page shows it taken
            run = subprocess.Popen(
                [sys.executable, "-c", QUEUED_RUN, str(db)],
                env={**os.environ, "PREFECT_API_URL": prefect_api},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(8)
            assert run.poll() is None, run.communicate()[0]  # still waiting: it neither failed nor wrote
            assert stored_rows(db, "SELECT count(*) AS n FROM run_events")[0]["n"] == 0
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, output
        assert stored_rows(db, "SELECT run_id FROM run_events") == [{"run_id": "queued"}]
        assert ensure_slot(name) == 0  # released with the store
