"""Export: a run's trajectories as training files, a full table and a dataset card.

<out>/<run_id>/ receives
- train.parquet: DeepWriting-20K's layout (`prompt` as a chat list, `solution` as
  `<think>` thinking `</think>` answer) plus category, source, scores and ids;
- train.jsonl: one chat `messages` list per line, as TRL's SFT trainer reads it;
- trajectories.parquet: every completed trajectory with its verdict and failed checks;
- README.md: the dataset card (counts, pass rates, scores, provenance).
The training files hold only the trajectories that passed every check of the run's latest
validation. Every written row is recorded in `exports`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.kill_points import kill_point
from reer.sql import read_sql
from reer.store import Store

TRAIN_PARQUET, TRAIN_JSONL, TABLE, CARD = "train.parquet", "train.jsonl", "trajectories.parquet", "README.md"


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
        }


def validated(store: Store, run_id: str) -> bool:
    """Whether any validation of the run is stored."""
    found = store.query("SELECT 1 FROM validations WHERE run_id = $run_id", run_id=run_id)
    return not found.is_empty()


def write_export(store: Store, run_id: str, out_dir: Path) -> Written:
    """Write the training files, the full table and the card; record every row in `exports`."""
    from reer.tasks.card import dataset_card

    if not validated(store, run_id):
        raise NotValidated(f"run {run_id} has not been validated yet (reer validate {run_id})")
    full = export_frame(store, run_id)
    train = training_frame(full)
    folder = Path(out_dir) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    train.write_parquet(folder / TRAIN_PARQUET)
    messages_frame(train).write_ndjson(folder / TRAIN_JSONL)
    full.write_parquet(folder / TABLE)
    written = Written(folder, full.height, train.height)
    (folder / CARD).write_text(dataset_card(store, run_id, written), encoding="utf-8")
    records = (
        export_records(run_id, train, "parquet", folder / TRAIN_PARQUET)
        + export_records(run_id, train, "jsonl", folder / TRAIN_JSONL)
        + export_records(run_id, full, "table", folder / TABLE)
    )
    kill_point("exporting")  # files written, their rows not yet: a rerun writes both again
    store.write("exports", records)
    return written


@task(cache_policy=NO_CACHE)
def export_run(store: Store, run_id: str, out_dir: Path) -> dict[str, str | int]:
    """Export a validated run under <out>/<run_id>/; returns the paths and row counts."""
    written = write_export(store, run_id, out_dir)
    return {"rows": written.train_rows, "table_rows": written.full_rows, **written.paths()}
