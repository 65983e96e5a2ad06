"""Export: a run's final trajectories as JSONL and Parquet, each row recorded for lineage."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.sql import read_sql
from reer.store import Store


def export_frame(store: Store, run_id: str) -> pl.DataFrame:
    """(prompt, thinking, answer, scores, ids) for every completed trajectory of the run."""
    return store.query(read_sql("queries/export_rows"), run_id=run_id)


@task(cache_policy=NO_CACHE)
def export_run(store: Store, run_id: str, out_dir: Path) -> dict[str, str | int]:
    """Write <out>/<run_id>/trajectories.{jsonl,parquet} and record every exported row."""
    frame = export_frame(store, run_id)
    folder = Path(out_dir) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"jsonl": folder / "trajectories.jsonl", "parquet": folder / "trajectories.parquet"}
    frame.write_ndjson(paths["jsonl"])
    frame.write_parquet(paths["parquet"])
    rows = [
        {"run_id": run_id, "trajectory_id": r["trajectory_id"], "revision_id": r["revision_id"],
         "example_id": r["example_id"], "format": fmt, "path": str(path), "row_index": i}
        for fmt, path in paths.items()
        for i, r in enumerate(frame.iter_rows(named=True))
    ]
    store.write("exports", rows)
    return {"rows": frame.height, **{fmt: str(p) for fmt, p in paths.items()}}
