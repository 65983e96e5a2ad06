"""What a store costs a writer: a DuckDB file against DuckLake on a SQLite and on a PostgreSQL catalog.

    .venv/bin/python -m bench.store

Per store kind: commits per second (one run_events row per transaction, as a run's status changes
land), seconds per stored batch (200 revisions of 2,000 characters in one transaction, as the search
stores a batch), commits per second of two processes writing at once (lakes only), and the Parquet
files a lake holds before and after compaction (Store.compact). PostgreSQL runs where this machine
has it (a throwaway server on loopback, tests/postgres_server.py). Writes bench/store.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from reer.settings import Settings
from reer.store import Store

HERE = Path(__file__).parent
COMMITS = 100  # single-row transactions per store
BATCHES = 20  # transactions of BATCH_ROWS revisions per store
BATCH_ROWS = 200
SHARED_COMMITS = 60  # single-row transactions per process when two write at once
THINKING = ("The scene needs a quieter ending, so the keeper leaves the logbook open for whoever comes next. " * 21)[
    :2000
]

TWO_WRITERS = """
import sys, time
from reer.store import Store
store = Store(sys.argv[1])
store.write("run_events", [{"run_id": sys.argv[2], "status": "ready"}])
started = time.perf_counter()
for n in range(int(sys.argv[3])):
    store.write("run_events", [{"run_id": sys.argv[2], "status": f"step {n}"}])
print(time.perf_counter() - started)
store.close()
"""


def revisions(batch: int) -> list[dict]:
    """One batch of candidate revisions, as the search stores them."""
    return [
        {
            "revision_id": f"b{batch}-r{i}",
            "trajectory_id": f"t{i % 8}",
            "run_id": "bench",
            "kind": "candidate",
            "step": batch,
            "segment_index": 0,
            "candidate_index": i,
            "thinking": THINKING,
            "accepted": False,
            "status": "scored",
            "score": 0.5,
        }
        for i in range(BATCH_ROWS)
    ]


def parquet_files(folder: Path | None) -> int:
    return sum(1 for _ in folder.rglob("*.parquet")) if folder else 0


def measure(location, data_folder: Path | None) -> dict:
    """Commits per second, seconds per batch, and (for a lake) the effect of compaction."""
    store = Store(location)
    try:
        started = time.perf_counter()
        for n in range(COMMITS):
            store.write("run_events", [{"run_id": "bench", "status": f"step {n}"}])
        commits_per_second = COMMITS / (time.perf_counter() - started)
        batch_seconds = []
        for batch in range(BATCHES):
            started = time.perf_counter()
            store.write("revisions", revisions(batch))
            batch_seconds.append(time.perf_counter() - started)
        figures = {
            "commits_per_second": round(commits_per_second, 1),
            "seconds_per_batch_of_200_revisions": round(statistics.median(batch_seconds), 4),
        }
        if store.lake is not None:
            figures["parquet_files_before_compaction"] = parquet_files(data_folder)
            started = time.perf_counter()
            catalog = store.compact(older_than_seconds=0)
            figures["compaction_seconds"] = round(time.perf_counter() - started, 2)
            figures["parquet_files_after_compaction"] = parquet_files(data_folder)
            figures["catalog_data_files_before_after"] = [catalog["data_files_before"], catalog["data_files_after"]]
            stored = store.query("SELECT count(*) AS n FROM revisions")["n"][0]
            assert stored == BATCHES * BATCH_ROWS, stored  # compaction keeps every row
    finally:
        store.close()
    if store.lake is not None:
        figures["commits_per_second_two_writers"] = two_writers(location)
    return figures


def two_writers(location) -> float:
    """Commits per second of two processes writing single-row transactions to one lake at once.

    Each process times its own writes (its start, imports and ATTACH excluded); the slower one sets the figure.
    """
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_WRITERS, str(location), name, str(SHARED_COMMITS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    seconds = []
    for writer in writers:
        out, _ = writer.communicate(timeout=300)
        if writer.returncode:
            raise RuntimeError("a writer failed")
        seconds.append(float(out.strip().splitlines()[-1]))
    return round(2 * SHARED_COMMITS / max(seconds), 1)


def store_kinds(folder: Path, stack: ExitStack) -> dict[str, tuple[object, Path | None]]:
    """Each store kind to measure, under `folder`: its location and its folder of Parquet files.

    A PostgreSQL server, where this machine has one, runs until `stack` closes.
    """
    kinds: dict[str, tuple[object, Path | None]] = {
        "duckdb_file": (folder / "reer.duckdb", None),
        "ducklake_sqlite": (f"ducklake:sqlite:{folder / 'lake.sqlite'}", folder / "lake.sqlite.files"),
    }
    try:
        from tests.postgres_server import PostgresMissing, local_postgres

        conninfo = stack.enter_context(local_postgres())
        files = folder / "pg-files"
        kinds["ducklake_postgres"] = (
            Settings(db=f"ducklake:postgres:{conninfo}", lake_data_path=f"{files}/").db,
            files,
        )
    except (ImportError, PostgresMissing) as missing:
        print(f"ducklake_postgres: not measured ({missing})")
    return kinds


def main() -> None:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        kinds = store_kinds(Path(folder), stack)
        for name, (location, data_folder) in kinds.items():
            results[name] = measure(location, data_folder)
            print(f"{name:<18} " + "  ".join(f"{k} {v}" for k, v in results[name].items()))
    report = {
        "commits": COMMITS,
        "batches": BATCHES,
        "batch_rows": BATCH_ROWS,
        "thinking_chars": len(THINKING),
        "two_writers_commits_each": SHARED_COMMITS,
        "stores": results,
    }
    (HERE / "store.json").write_text(json.dumps(report, indent=2) + "\n")
    print("wrote bench/store.json")


if __name__ == "__main__":
    main()
