"""Export: a run's trajectories as training files, a full table and a dataset card.

<out>/<run_id>/ receives
- train.parquet: DeepWriting-20K's layout (`prompt` as a chat list, `solution` as
  `<think>` thinking `</think>` answer) plus category, source, scores and ids;
- train.jsonl: one chat `messages` list per line, as TRL's SFT trainer reads it;
- trajectories.parquet: every completed trajectory with its verdict and failed checks;
- README.md: the dataset card (counts, pass rates, scores, provenance);
- manifest.json, written last: every file with its rows, bytes and sha256. Only a folder with
  a manifest holds a complete export; the files' hashes say which export they belong to.
The training files hold only the trajectories that passed every check of the run's latest
validation. Every written row is recorded in `exports`.

The files are written into a temporary folder beside them (the same file system) and renamed
into place only when all are complete, so a crash never leaves a truncated file that looks
whole; exporting the same run again replaces them and adds no `exports` row it already holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.kill_points import kill_point
from reer.sql import read_sql
from reer.store import Store

TRAIN_PARQUET, TRAIN_JSONL, TABLE, CARD = "train.parquet", "train.jsonl", "trajectories.parquet", "README.md"
MANIFEST = "manifest.json"
STAGING = ".export-"  # the prefix of an export's temporary folder and files beside the target


class NotValidated(RuntimeError):
    """The run has no validation yet, so no trajectory is known to pass."""


def solution_text(thinking: str, answer: str) -> str:
    """The assistant turn: the thinking inside <think> tags, then the answer."""
    return f"<think>\n{thinking}\n</think>\n{answer}"


def export_frame(store: Store, run_id: str) -> pl.DataFrame:
    """Every completed trajectory of the run with its verdict (prompt, thinking, answer, scores, ids)."""
    return store.query(read_sql("queries/export_rows"), run_id=run_id)


def training_frame(full: pl.DataFrame) -> pl.DataFrame:
    """The passing rows in DeepWriting-20K's layout, with category, source, scores and ids beside it."""
    passed = full.filter(pl.col("passed").fill_null(False))
    return passed.select(
        pl.concat_list(pl.struct(pl.lit("user").alias("role"), pl.col("query").alias("content"))).alias("prompt"),
        pl.format("<think>\n{}\n</think>\n{}", "thinking", "answer").alias("solution"),
        "category",
        "source",
        "language",
        "initial_score",
        "final_score",
        "nll",
        "ppl",
        "thinking_tokens",
        "steps",
        "accepted_edits",
        "trajectory_id",
        "revision_id",
        "example_id",
        "run_id",
        "prompt_version",
    )


def messages_frame(train: pl.DataFrame) -> pl.DataFrame:
    """One `messages` chat per row: the user's query, the assistant's thinking and answer."""
    messages = [
        [{"role": "user", "content": p[0]["content"]}, {"role": "assistant", "content": s}]
        for p, s in zip(train["prompt"].to_list(), train["solution"].to_list())
    ]
    dtype = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
    return pl.DataFrame({"messages": pl.Series(messages, dtype=dtype)})


def export_records(run_id: str, frame: pl.DataFrame, fmt: str, path: Path) -> list[dict]:
    """An `exports` row per written row: which revision sits at which line of which file."""
    return [
        {
            "run_id": run_id,
            "trajectory_id": t,
            "revision_id": r,
            "example_id": e,
            "format": fmt,
            "path": str(path),
            "row_index": i,
        }
        for i, (t, r, e) in enumerate(zip(frame["trajectory_id"], frame["revision_id"], frame["example_id"]))
    ]


@dataclass
class Written:
    """The files of one export and their row counts."""

    folder: Path
    full_rows: int
    train_rows: int

    def paths(self) -> dict[str, str]:
        return {
            "parquet": str(self.folder / TRAIN_PARQUET),
            "jsonl": str(self.folder / TRAIN_JSONL),
            "table": str(self.folder / TABLE),
            "card": str(self.folder / CARD),
            "manifest": str(self.folder / MANIFEST),
        }


def validated(store: Store, run_id: str) -> bool:
    """Whether any validation of the run is stored."""
    found = store.query("SELECT 1 FROM validations WHERE run_id = $run_id", run_id=run_id)
    return not found.is_empty()


def write_export(store: Store, run_id: str, out_dir: Path) -> Written:
    """Write the training files, the full table and the card; record every row in `exports`; then the manifest."""
    from reer.tasks.card import dataset_card

    if not validated(store, run_id):
        raise NotValidated(f"run {run_id} has not been validated yet (reer validate {run_id})")
    full = export_frame(store, run_id)
    train = training_frame(full)
    folder = Path(out_dir) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    written = Written(folder, full.height, train.height)
    card = dataset_card(store, run_id, written)
    with staging(folder) as stage:
        train.write_parquet(stage / TRAIN_PARQUET)
        messages_frame(train).write_ndjson(stage / TRAIN_JSONL)
        full.write_parquet(stage / TABLE)
        (stage / CARD).write_text(card, encoding="utf-8")
        rows = {TRAIN_PARQUET: train.height, TRAIN_JSONL: train.height, TABLE: full.height, CARD: None}
        manifest = export_manifest(store, run_id, stage, rows)
        move_into_place(stage, folder, list(rows))
    records = (
        export_records(run_id, train, "parquet", folder / TRAIN_PARQUET)
        + export_records(run_id, train, "jsonl", folder / TRAIN_JSONL)
        + export_records(run_id, full, "table", folder / TABLE)
    )
    kill_point("exporting")  # files in place, their rows not yet: a rerun writes both again
    store_new_records(store, run_id, records)
    write_atomically(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")  # last: the export is complete
    return written


@contextmanager
def staging(folder: Path) -> Iterator[Path]:
    """A temporary folder inside `folder` (so renames out of it are atomic), removed whatever happens.

    Leftovers of an export killed before it could tidy up are removed first.
    """
    for stale in folder.glob(f"{STAGING}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=STAGING, dir=folder))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export_manifest(store: Store, run_id: str, stage: Path, rows: dict[str, int | None]) -> dict:
    """What a complete export holds: each file with its rows (None: not a table), bytes and sha256."""
    validation = store.query("SELECT validation_id FROM latest_validations WHERE run_id = $run_id", run_id=run_id)
    files = [
        {"path": name, "rows": n, "bytes": (stage / name).stat().st_size, "sha256": file_sha256(stage / name)}
        for name, n in rows.items()
    ]
    return {"run_id": run_id, "validation_id": validation["validation_id"][0], "complete": True, "files": files}


def _fsync(path: Path) -> None:
    """Flush a file or a folder's entries to disk, so a rename never outlives the data it names."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():  # some file systems cannot sync a folder; a file must sync
            raise
    finally:
        os.close(fd)


def move_into_place(stage: Path, folder: Path, names: list[str]) -> None:
    """Rename the complete staged files over the old ones; the old manifest goes first."""
    for name in names:
        _fsync(stage / name)
    (folder / MANIFEST).unlink(missing_ok=True)  # until a new one is written, no complete export is here
    for name in names:
        os.replace(stage / name, folder / name)
    _fsync(folder)


def write_atomically(path: Path, text: str) -> None:
    """Write a file through a temporary one beside it and a rename: readers see the old or the new, whole.

    A temporary file left by a writer killed mid-write is removed by the next write of the same file.
    """
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{prefix}*"):
        stale.unlink(missing_ok=True)
    partial = path.parent / f"{prefix}{uuid.uuid4().hex}"  # not mkstemp: its 0600 would replace the file's mode
    try:
        with partial.open("x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def store_new_records(store: Store, run_id: str, records: list[dict]) -> int:
    """Insert the `exports` rows not already held, in one transaction: exporting a run again adds none.

    A row is known by (run_id, format, path, row_index, revision_id): the same export again adds
    nothing; one after a new validation changed the passing rows adds the rows of its new lines.
    """
    from sqlalchemy import text

    def store_fresh(con) -> int:
        held = con.execute(
            text("SELECT format, path, row_index, revision_id FROM exports WHERE run_id = :run_id"), {"run_id": run_id}
        ).all()
        known = {tuple(row) for row in held}
        fresh = [r for r in records if (r["format"], r["path"], r["row_index"], r["revision_id"]) not in known]
        return store.append(con, "exports", fresh)

    return store.atomically(store_fresh)


@task(cache_policy=NO_CACHE)
def export_run(store: Store, run_id: str, out_dir: Path) -> dict[str, str | int]:
    """Export a validated run under <out>/<run_id>/; returns the paths and row counts."""
    written = write_export(store, run_id, out_dir)
    return {"rows": written.train_rows, "table_rows": written.full_rows, **written.paths()}
