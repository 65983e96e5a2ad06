"""Read-only views of the store: `reer sql`, `reer show`, `reer sources` and `reer report`.

These open the database read-only (or a running search's snapshot), so they work while a run
writes. None of them imports Prefect.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from reer.cli.errors import fail, first_line, settings_from
from reer.cli.options import Db, Out

if TYPE_CHECKING:
    from reer.lake import Lake

RUNS_HINT = 'list them: reer sql "SELECT run_id, flow_name, status FROM run_overview"'


def store_path(db: str | None) -> Path | Lake:
    """The store to read: --db, else the settings' (REER_DB, or ./reer.duckdb).

    The only setting these commands read: with --db given they skip building the settings (and
    importing pydantic-settings, about 0.13 s of `reer sql`'s start).
    """
    if db is None:
        return settings_from().db
    from reer.lake import BadStore, store_location

    try:
        return store_location(db)
    except BadStore as error:
        fail(f"bad option db: {error}")


def sql(
    query: str = typer.Argument(..., help="a read-only SQL query over the store's tables and views"),
    db: Db = None,
    format: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
) -> None:
    """Query the trajectory history (read-only)."""
    if format not in {"table", "csv", "json"}:
        fail(f"unknown format {format!r}: use table, csv or json")
    path = store_path(db)
    import duckdb

    from reer.console import clean
    from reer.lake import LakeUnavailable
    from reer.store import StoreBusy, read_only_query

    try:
        frame = read_only_query(path, query)
    except (StoreBusy, LakeUnavailable, FileNotFoundError) as error:
        fail(str(error))
    except duckdb.Error as error:
        fail(clean(first_line(error)))  # a conversion error quotes the value
    # csv and json are cleaned too: no escape sequence reaches a terminal (json escapes C0 itself)
    if format == "csv":
        sys.stdout.write(clean(frame.write_csv()))
    elif format == "json":
        sys.stdout.write(clean(json.dumps(frame.to_dicts(), default=str, ensure_ascii=False, indent=1)) + "\n")
    else:
        from reer.cli.rendering import print_frame

        print_frame(frame)


def show(
    item: str = typer.Argument(..., help="a trajectory id, example id, or a prefix of one"),
    db: Db = None,
) -> None:
    """An item's revisions with their scores, and its score per step drawn."""
    path = store_path(db)
    import duckdb

    from reer.cli.rendering import print_controls, print_revisions
    from reer.lake import LakeUnavailable
    from reer.sql import read_sql
    from reer.store import StoreBusy, read_only_query

    try:
        revisions = read_only_query(path, read_sql("queries/item_revisions"), item=item)
    except (StoreBusy, LakeUnavailable, FileNotFoundError) as error:
        fail(str(error))
    if revisions.is_empty():
        fail(f'no trajectory matches {item!r} (list them: reer sql "SELECT trajectory_id FROM outcomes")')
    trajectory = revisions["trajectory_id"][0]
    print_revisions(revisions.filter(revisions["trajectory_id"] == trajectory))
    try:
        controls = read_only_query(path, read_sql("queries/item_controls"), trajectory_id=trajectory).to_dicts()
    except duckdb.CatalogException:  # a store no writer of this version has opened yet: no controls table
        controls = []
    print_controls(controls)


def sources(
    run_id: str | None = typer.Argument(None, help="a run id (default: the latest run that read files)"),
    db: Db = None,
) -> None:
    """What a run read, per file: loaded, merged as duplicates, already stored, and rejected per reason."""
    path = store_path(db)
    from reer.cli.rendering import print_sources
    from reer.lake import LakeUnavailable
    from reer.sql import read_sql
    from reer.store import StoreBusy, read_only_query

    try:
        if run_id is None:
            latest = read_only_query(path, "SELECT run_id FROM source_records ORDER BY created_at DESC LIMIT 1")
            if latest.is_empty():
                fail("no run has read any file yet (reer ingest FILES...)")
            run_id = latest["run_id"][0]
        rows = read_only_query(path, read_sql("queries/source_counts"), run_id=run_id).to_dicts()
    except (StoreBusy, LakeUnavailable, FileNotFoundError) as error:
        fail(str(error))
    if not rows:
        fail(f'run {run_id!r} read no files (list runs: reer sql "SELECT run_id, flow_name, status FROM run_overview")')
    print_sources(run_id, rows)


def report(
    run_id: str | None = typer.Argument(None, help="run to report on (default: the latest completed synthesize run)"),
    db: Db = None,
    out_dir: Out = None,
) -> None:
    """Write a run's HTML report: score per step, improvement, acceptance per segment, throughput, rejects, checks."""
    from functools import partial

    import duckdb

    from reer.cli.rendering import out
    from reer.lake import LakeUnavailable
    from reer.store import StoreBusy, read_only_query
    from reer.tasks.report import build_report, latest_run

    settings = settings_from(db=db, out=out_dir)
    query = partial(read_only_query, settings.db)
    try:
        run_id = run_id or latest_run(query)
        if run_id is None:
            fail("no completed synthesize run in the store yet (reer run first)")
        written = build_report(query, run_id, settings.out)
    except (StoreBusy, LakeUnavailable, FileNotFoundError) as error:
        fail(str(error))
    except LookupError as error:
        fail(f"{error} ({RUNS_HINT})")
    except duckdb.CatalogException as error:  # views this version added, which a reader cannot create
        fail(f"{first_line(error)}: the store was last written by an older reer; any writer adds it (reer validate)")
    console = out()
    console.print(f"report of run {run_id}: {written}", soft_wrap=True, markup=False)
    console.print(f"open it: {written.resolve().as_uri()}", soft_wrap=True, markup=False)
