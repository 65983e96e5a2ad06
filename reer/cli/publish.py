"""`reer validate` and `reer export`: the quality checks and the training files of a stored run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from reer.cli.errors import fail, guarded, quiet_prefect, settings_from
from reer.cli.options import Db, Out

if TYPE_CHECKING:
    from reer.lake import Lake
    from reer.store import Store


def export(
    run_id: str | None = typer.Argument(None, help="run to export (default: the latest completed run)"),
    db: Db = None,
    out_dir: Out = None,
) -> None:
    """Write a run's passing trajectories (Parquet, JSONL), its full table and a dataset card."""
    quiet_prefect(False)
    from reer.cli.rendering import out
    from reer.tasks.export import export_run, validated
    from reer.tasks.quality import validate_run

    settings = settings_from(db=db, out=out_dir)
    console = out()
    with open_store(settings.db) as store:
        run_id = resolve_run(store, run_id)
        if not validated(store, run_id):
            console.print(Text(f"run {run_id} has no validation yet: validating it first"))
            with guarded():
                validate_run.fn(store, run_id, settings.quality, settings.out)
        with guarded():
            result = export_run.fn(store, run_id, settings.out)
    console.print(
        Text(
            f"exported {result['rows']} of {result['table_rows']} trajectories of run {run_id} (those passing every check):"
        )
    )
    for key in ("parquet", "jsonl", "table", "card"):
        console.print(Text(f"  {result[key]}"))
    if not result["rows"]:
        console.print(
            Text(
                f'no trajectory passed every check; why: reer sql "SELECT trajectory_id, reasons FROM trajectory_verdicts '
                f"WHERE run_id = '{run_id}'\""
            )
        )


def validate(
    run_id: str | None = typer.Argument(None, help="run to validate (default: the latest completed run)"),
    db: Db = None,
    out_dir: Out = None,
) -> None:
    """Run the quality checks on a run's examples and trajectories; store every verdict."""
    quiet_prefect(False)
    from reer.cli.rendering import out, print_checks
    from reer.tasks.controls import run_margin
    from reer.tasks.quality import check_specs, validate_run

    settings = settings_from(db=db, out=out_dir)
    with open_store(settings.db) as store:
        run_id = resolve_run(store, run_id)
        with guarded():
            result = validate_run.fn(store, run_id, settings.quality, settings.out)
        rates = store.query("SELECT * FROM check_pass_rates WHERE run_id = $run_id", run_id=run_id)
        margin = run_margin(store.query, run_id)
    print_checks(rates, check_specs(settings.quality, margin))
    console = out()
    console.print(
        f"{result['passed']} of {result['checked']} trajectories passed every check "
        f"({result['examples_checked']} examples checked); the view passed_trajectories holds them."
    )
    console.print(Text(f"Data Docs: {result['data_docs'] or '(none: nothing to validate)'}"))


@contextmanager
def open_store(path: Path | Lake) -> Iterator[Store]:
    """The store for writing, or one clear line if it is missing, busy or cannot be opened."""
    from reer.lake import LakeUnavailable
    from reer.store import Store, StoreBusy

    if isinstance(path, Path) and not path.exists():
        fail(f"no reer database at {path} (run `reer run` first, or pass --db)")
    try:
        store = Store(path)
    except (StoreBusy, LakeUnavailable) as error:
        fail(str(error))
    try:
        yield store
    finally:
        store.close()


def resolve_run(store: Store, run_id: str | None) -> str:
    """The run asked for, or the latest completed one; one clear line if there is none."""
    if run_id is None:
        latest = store.query(
            "SELECT run_id FROM run_overview WHERE status = 'completed' ORDER BY started_at DESC LIMIT 1"
        )
        if latest.is_empty():
            fail("no completed run in the store yet")
        return latest["run_id"][0]
    if store.query("SELECT 1 FROM runs WHERE run_id = $run_id", run_id=run_id).is_empty():
        fail(f'no run {run_id!r} in the store (list them: reer sql "SELECT run_id, status FROM run_overview")')
    return run_id
