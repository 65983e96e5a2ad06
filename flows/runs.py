"""A run's life in the store, shared by every flow: its row, then running -> completed | interrupted | failed
(or crashed, written by the next run when a process died without a word)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reer.store import Store


def new_run_id() -> str:
    """Sortable by start time, unique across processes."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@contextmanager
def recorded_run(store: Store, run: dict) -> Iterator[None]:
    """Store the run and 'running'; on Ctrl-C or an error store that status and re-raise; close the store."""
    run_id = run["run_id"]
    try:
        mark_crashed(store)
        store.write("runs", [run])
        store.write("run_events", [{"run_id": run_id, "status": "running"}])
        yield
    except KeyboardInterrupt:
        store.write("run_events", [{"run_id": run_id, "status": "interrupted"}])
        raise
    except Exception as error:
        store.write("run_events", [{"run_id": run_id, "status": "failed", "detail": {"error": str(error)}}])
        raise
    finally:
        store.drop_snapshot()
        store.close()


def mark_crashed(store: Store) -> list[str]:
    """Runs still 'running' died without a word (a kill, a power cut): this process holds the
    write lock, so none of them can still be alive. Say so in their status."""
    dead = store.query("SELECT run_id FROM run_overview WHERE status = 'running'")["run_id"].to_list()
    store.write(
        "run_events",
        [{"run_id": r, "status": "crashed", "detail": {"found_by": "the next run on this database"}} for r in dead],
    )
    return dead


def complete_run(store: Store, run_id: str, summary: dict[str, Any]) -> None:
    """The run finished: its figures go with the 'completed' status."""
    store.write("run_events", [{"run_id": run_id, "status": "completed", "detail": summary}])
