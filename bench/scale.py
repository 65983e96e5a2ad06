"""What more workers buy on this machine, and what each store kind costs a writer.

    .venv/bin/python -m bench.scale          (make bench-scale)

The same real items (../shared/data, EQ-Bench, answers cut short) and the same search settings are
searched on a DuckLake store with a SQLite catalog: in one process (`--workers 1`, torch on every
core), in two shards on a local Ray cluster (`--workers 2`, one thread each), and in one process on
one thread, which separates the second core from the rest. Items per hour count the search stage, from
the end of planning to the last stored outcome (Ray's start and the workers' model loads included);
the whole run's wall time is beside it. Then bench.store's measurements for every store kind
(commits/s, seconds per stored batch, Parquet files before and after compaction), and the bytes a
lake holds per trajectory. Writes bench/scale.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.store import measure, store_kinds
from reer.store import Store, read_only_query

HERE = Path(__file__).parent
ITEMS = 8
# A short search in float32 (tests/flows/test_ray_workers.py's, a little longer), so that a run takes minutes here.
SEARCH = dict(
    max_initial_tokens=128,
    max_refine_tokens=48,
    max_steps=2,
    k=2,
    seed=1,
    min_thinking_tokens=40,
    initial_retries=0,
    refine_retries=0,
)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def search_seconds(db: str, run_id: str) -> float:
    """From the end of planning (the run's trajectory rows) to its last stored outcome."""
    span = read_only_query(
        db,
        "SELECT epoch(max(o.created_at)) - epoch((SELECT max(created_at) FROM trajectories WHERE run_id = $run)) AS s "
        "FROM outcomes o WHERE o.run_id = $run",
        run=run_id,
    )
    return float(span["s"][0])


def run_search(folder: Path, items: Path, workers: int, threads: int | None = None) -> dict:
    """Ingest (no model) and search the items with `workers` workers on a fresh SQLite lake; its figures.

    `threads`: torch's threads in the one process (default: every core); each worker always has one.
    """
    from reer.flows.ingest import ingest
    from reer.flows.synthesize import synthesize

    lake = folder / f"workers-{workers}-threads-{threads}" / "lake.sqlite"
    db = f"ducklake:sqlite:{lake}"
    options = {"db": db, "out": str(lake.parent / "out"), "dtype": "float32", "search": SEARCH, "threads": threads}
    ingest(inputs=[str(items)], options=options, use_model=False)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    summary = synthesize(options=options, from_store=True, workers=workers)
    wall = time.perf_counter() - started
    searching = search_seconds(db, summary.run_id)
    trajectories = int(read_only_query(db, "SELECT count(*) AS n FROM outcomes")["n"][0])
    text = read_only_query(
        db, "SELECT count(*) AS n, CAST(sum(length(thinking)) AS BIGINT) AS chars FROM revisions"
    ).to_dicts()[0]
    files = Path(f"{lake}.files")
    stored = {"catalog_bytes": lake.stat().st_size, "parquet_bytes": folder_bytes(files)}
    store = Store(db)
    try:
        store.compact(older_than_seconds=0)
    finally:
        store.close()
    compacted_parquet = folder_bytes(files)
    compacted = lake.stat().st_size + compacted_parquet
    return {
        "items": summary.items,
        "search_seconds": round(searching, 1),
        "wall_seconds": round(wall, 1),
        "items_per_hour": round(summary.items / searching * 3600, 1),
        "items_per_hour_whole_run": round(summary.items / wall * 3600, 1),
        # This machine is shared: the load average says how much of its two cores others took meanwhile.
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "completed": summary.completed,
        "generated_tokens": summary.generated_tokens,
        "scored_tokens": summary.scored_tokens,
        "trajectories": trajectories,
        **stored,
        "bytes_per_trajectory": round((stored["catalog_bytes"] + stored["parquet_bytes"]) / trajectories),
        "bytes_per_trajectory_compacted": round(compacted / trajectories),
        "revisions": text["n"],
        "thinking_chars": text["chars"],
        # Stored text dominates a large store: Parquet bytes per character of thinking, once compacted.
        "parquet_bytes_per_thinking_char_compacted": round(compacted_parquet / text["chars"], 2),
    }


def main() -> None:
    from tests.conftest import short_eqbench_items

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory() as temporary, ExitStack() as stack:
        folder = Path(temporary)
        items = short_eqbench_items(folder, count=ITEMS)
        runs = {
            "1_worker": run_search(folder, items, 1),
            "2_workers": run_search(folder, items, 2),
            # One process on one thread: what two workers gain over it is the second core, no more.
            "1_worker_1_thread": run_search(folder, items, 1, threads=1),
        }
        for name, figures in runs.items():
            print(f"{name}: " + "  ".join(f"{k} {v}" for k, v in figures.items()))
        stores = {name: measure(location, files) for name, (location, files) in store_kinds(folder, stack).items()}
    one, two = runs["1_worker"]["items_per_hour"], runs["2_workers"]["items_per_hour"]
    report = {
        "items_per_hour_1_worker": one,
        "items_per_hour_2_workers": two,
        "speedup_2_workers": round(two / one, 2),
        "cores": os.cpu_count(),
        "settings": {"items": ITEMS, "dtype": "float32", "search": SEARCH, "store": "ducklake:sqlite"},
        "items_per_hour_1_worker_1_thread": runs["1_worker_1_thread"]["items_per_hour"],
        "runs": runs,
        "stores": stores,
    }
    (HERE / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"items/hour: 1 worker {one}, 2 workers {two} (x{report['speedup_2_workers']}); wrote bench/scale.json")


if __name__ == "__main__":
    main()
