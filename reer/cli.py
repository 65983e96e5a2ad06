"""The `reer` command: run the pipeline, query the store, show an item, export."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Synthesize deep-reasoning data for open-ended writing (REER).")
out = Console(highlight=False)


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's local API without telemetry; its console logs only when asked for."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not verbose:
        # reer prints one line per problem; Prefect's console handler would add tracebacks.
        # Logs still reach Prefect's API and dashboard.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "100")


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[red]reer:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _db(db: Optional[Path]) -> Path:
    from reer.settings import Settings

    return db or Settings().db


@app.command()
def run(
    inputs: list[Path] = typer.Argument(None, help="JSONL/JSON files of (query, reference); default: the bundled sample"),
    limit: Optional[int] = typer.Option(None, help="search at most this many examples"),
    db: Optional[Path] = typer.Option(None, help="DuckDB file (default ./reer.duckdb, or REER_DB)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="export folder (default ./reer-out)"),
    dtype: Optional[str] = typer.Option(None, help="bfloat16 (fast) or float32 (exact)"),
    generator: Optional[str] = typer.Option(None, help="generator model: a folder or the shipped SmolLM2"),
    scorer: Optional[str] = typer.Option(None, help="scorer model: a folder or the shipped SmolLM2"),
    tau: Optional[float] = typer.Option(None, help="stop once the score is under this (0.25)"),
    max_steps: Optional[int] = typer.Option(None, help="segments refined at most (10)"),
    k: Optional[int] = typer.Option(None, "-k", help="candidates per segment (2)"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature (0.8)"),
    top_p: Optional[float] = typer.Option(None, help="nucleus sampling mass (0.85)"),
    seed: Optional[int] = typer.Option(None, help="base seed (0)"),
    max_initial_tokens: Optional[int] = typer.Option(None, help="token limit of z(0)"),
    max_refine_tokens: Optional[int] = typer.Option(None, help="token limit of one rewrite"),
    on_unfinished: Optional[str] = typer.Option(None, help="z(0) cut by the limit: trim or reject"),
    generation_rows: Optional[int] = typer.Option(None, help="sequences generated together"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs"),
) -> None:
    """Search REER thinking trajectories and store every revision."""
    _quiet_prefect(verbose)
    from pydantic import ValidationError

    from reer.settings import Settings

    options: dict = {}
    search = {k_: v for k_, v in dict(tau=tau, max_steps=max_steps, k=k, temperature=temperature, top_p=top_p,
                                       seed=seed, max_initial_tokens=max_initial_tokens,
                                       max_refine_tokens=max_refine_tokens, on_unfinished=on_unfinished).items()
              if v is not None}
    for key, value in dict(db=db, out=out_dir, dtype=dtype, generator_model=generator, scorer_model=scorer,
                           generation_rows=generation_rows).items():
        if value is not None:
            options[key] = str(value) if isinstance(value, Path) else value
    if search:
        options["search"] = {**Settings().search.model_dump(), **search}
    try:
        Settings(**options)
    except ValidationError as error:
        first = error.errors()[0]
        _fail(f"bad option {'.'.join(map(str, first['loc']))}: {first['msg']}")
    missing = [str(p) for p in inputs or [] if not p.exists()]
    if inputs and len(missing) == len(inputs):
        _fail(f"no such input: {', '.join(missing)}")
    summary = _run_with_progress(inputs, limit, options)
    _print_summary(summary)


def _run_with_progress(inputs, limit, options) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from reer.console import on_progress
    from reer.models.shipped import ModelNotFound
    from reer.store import StoreBusy

    progress = Progress(TextColumn("searching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    bar = progress.add_task("search", total=None)
    on_progress(lambda done, total: progress.update(bar, completed=done, total=total))
    from reer.flows.synthesize import synthesize  # imported late: Prefect loads in seconds

    try:
        with progress:
            return synthesize(inputs=[str(p) for p in inputs] if inputs else None, limit=limit, options=options)
    except (StoreBusy, ModelNotFound) as error:
        _fail(str(error))
    except Exception as error:  # a user sees one line; Prefect's run log keeps the traceback
        _fail(f"run failed: {error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''} (details: reer run -v)")
    except KeyboardInterrupt:
        _fail("interrupted; finished items are stored. Run the same command again to go on.")


def _print_summary(summary: dict) -> None:
    table = Table(title=f"reer run {summary['run_id']}", show_header=False, title_justify="left")
    rows = [
        ("items searched", summary["items"]),
        ("already done (skipped)", summary["skipped_done"]),
        ("completed", summary["completed"]),
        ("rejected in search", summary["rejected_in_search"]),
        ("rejected inputs", summary["rejected_inputs"]),
        ("mean score, initial -> final", _pair(summary["mean_initial_score"], summary["mean_final_score"])),
        ("mean score drop", _num(summary["mean_score_drop"])),
        ("accepted edits / candidates", f"{summary['accepted_edits'] or 0} / {summary['candidates']}"),
        ("unparsable rewrites", summary["unparsable"]),
        ("wall time", f"{summary['wall_seconds']} s"),
        ("items per hour", summary["items_per_hour"]),
        ("generated tokens/s", summary["generated_tokens_per_second"]),
        ("scored tokens/s", summary["scored_tokens_per_second"]),
        ("database", summary["db"]),
        ("exported", summary["exported"].get("parquet", "")),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)
    for r in summary["rejects_by_reason"]:
        out.print(f"  rejected at {r['stage']}: {r['reason']} x{r['n']}")


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pair(a, b) -> str:
    return f"{_num(a)} -> {_num(b)}"


@app.command()
def sql(
    query: str = typer.Argument(..., help="a read-only SQL query over the store's tables and views"),
    db: Optional[Path] = typer.Option(None, help="DuckDB file"),
    format: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
) -> None:
    """Query the trajectory history (read-only)."""
    import duckdb

    from reer.store import StoreBusy, read_only_query

    if format not in {"table", "csv", "json"}:
        _fail(f"unknown format {format!r}: use table, csv or json")
    try:
        frame = read_only_query(_db(db), query)
    except (StoreBusy, FileNotFoundError) as error:
        _fail(str(error))
    except duckdb.Error as error:
        _fail(str(error).splitlines()[0])
    if format == "csv":
        sys.stdout.write(frame.write_csv())
    elif format == "json":
        sys.stdout.write(json.dumps(frame.to_dicts(), default=str, ensure_ascii=False, indent=1) + "\n")
    else:
        _print_frame(frame)


def _print_frame(frame) -> None:
    table = Table(show_lines=False)
    for name in frame.columns:
        table.add_column(name, overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*["" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)) for v in row])
    out.print(table)
    out.print(f"{frame.height} row{'s' if frame.height != 1 else ''}")


@app.command()
def show(
    item: str = typer.Argument(..., help="a trajectory id, example id, or a prefix of one"),
    db: Optional[Path] = typer.Option(None, help="DuckDB file"),
) -> None:
    """An item's revisions with their scores, and its score per step drawn."""
    from reer.store import StoreBusy, read_only_query
    from reer.sql import read_sql

    try:
        revisions = read_only_query(_db(db), read_sql("queries/item_revisions"), item=item)
    except (StoreBusy, FileNotFoundError) as error:
        _fail(str(error))
    if revisions.is_empty():
        _fail(f"no trajectory matches {item!r} (list them: reer sql \"SELECT trajectory_id FROM outcomes\")")
    trajectory = revisions["trajectory_id"][0]
    revisions = revisions.filter((revisions["trajectory_id"] == trajectory) & (revisions["run_id"] == revisions["run_id"][0]))
    first = revisions.row(0, named=True)
    out.print(f"[bold]trajectory {trajectory}[/bold]  run {first['run_id']}  example {first['example_id']}")
    out.print(f"[dim]query:[/dim] {first['query'][:300]}")
    table = Table()
    for name in ("step", "segment", "cand", "status", "accepted", "score", "nll", "ppl", "text"):
        table.add_column(name, overflow="fold")
    for r in revisions.iter_rows(named=True):
        text = (r["segment_text"] if r["kind"] == "candidate" else r["thinking"]) or ""
        table.add_row(str(r["step"]), _dash(r["segment_index"]), _dash(r["candidate_index"]), r["status"],
                      "yes" if r["accepted"] else "", _num(r["score"]), _num(r["nll"]), _num(r["ppl"]),
                      text[:160].replace("\n", " ") + ("..." if len(text) > 160 else ""))
    out.print(table)
    out.print(score_chart(revisions))


def _dash(value) -> str:
    return "-" if value is None else str(value)


def score_chart(revisions) -> str:
    """Best score after each step, drawn as horizontal bars."""
    best: dict[int, float] = {}
    current = None
    for r in revisions.sort("step").iter_rows(named=True):
        if r["accepted"] and r["score"] is not None:
            current = r["score"] if current is None else min(current, r["score"])
        if current is not None:
            best[r["step"]] = current
    if not best:
        return "no scored revision"
    top = max(best.values()) or 1.0
    lines = ["best score after each step:"]
    for step, score in sorted(best.items()):
        lines.append(f"  step {step:>2} {'█' * max(1, round(40 * score / top)):<40} {score:.4f}")
    return "\n".join(lines)


@app.command()
def export(
    run_id: Optional[str] = typer.Argument(None, help="run to export (default: the latest completed run)"),
    db: Optional[Path] = typer.Option(None, help="DuckDB file"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="export folder (default ./reer-out)"),
) -> None:
    """Write a run's trajectories as JSONL and Parquet."""
    _quiet_prefect(False)
    from reer.settings import Settings
    from reer.store import Store, StoreBusy
    from reer.tasks.export import export_run

    settings = Settings()
    try:
        store = Store(_db(db))
    except StoreBusy as error:
        _fail(str(error))
    try:
        if run_id is None:
            latest = store.query("SELECT run_id FROM run_overview WHERE status = 'completed' ORDER BY started_at DESC LIMIT 1")
            if latest.is_empty():
                _fail("no completed run in the store yet")
            run_id = latest["run_id"][0]
        result = export_run.fn(store, run_id, out_dir or settings.out)
    finally:
        store.close()
    out.print(f"exported {result['rows']} trajectories of run {run_id}:\n  {result['jsonl']}\n  {result['parquet']}")


def main() -> None:
    """Entry point: run the command, then leave without the interpreter's teardown noise."""
    code = 0
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    # DuckDB's bindings report still-live objects at interpreter shutdown as "leaks"; every
    # file and connection is closed by now, so skip that teardown.
    os._exit(code)


if __name__ == "__main__":
    main()
