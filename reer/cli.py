"""The `reer` command: run the pipeline, query the store, show an item, export."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Synthesize deep-reasoning data for open-ended writing (REER).",
)
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
    # soft_wrap: one line whatever the width, so a log or a test sees one line per problem
    Console(stderr=True).print(f"[red]reer:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _db(db: Path | None) -> Path:
    from reer.settings import Settings

    return db or Settings().db


@app.command()
def run(
    inputs: list[Path] = typer.Argument(
        None, help="JSONL, JSON, CSV, Parquet, text files or datasets folders; default: the bundled sample"
    ),
    limit: int | None = typer.Option(None, help="search at most this many examples"),
    from_store: bool = typer.Option(
        False,
        "--from-store",
        help="search the stored examples with no completed trajectory under these settings (what `reer ingest` stored)",
    ),
    db: Path | None = typer.Option(None, help="DuckDB file (default ./reer.duckdb, or REER_DB)"),
    out_dir: Path | None = typer.Option(None, "--out", help="export folder (default ./reer-out)"),
    dtype: str | None = typer.Option(None, help="bfloat16 (fast) or float32 (exact)"),
    generator: str | None = typer.Option(None, help="generator model: a folder or the shipped SmolLM2"),
    scorer: str | None = typer.Option(None, help="scorer model: a folder or the shipped SmolLM2"),
    tau: float | None = typer.Option(None, help="stop once the score is under this (0.25)"),
    max_steps: int | None = typer.Option(None, help="segments refined at most (10)"),
    k: int | None = typer.Option(None, "-k", help="candidates per segment (2)"),
    temperature: float | None = typer.Option(None, help="sampling temperature (0.8)"),
    top_p: float | None = typer.Option(None, help="nucleus sampling mass (0.85)"),
    seed: int | None = typer.Option(None, help="base seed (0)"),
    max_initial_tokens: int | None = typer.Option(None, help="token limit of z(0)"),
    max_refine_tokens: int | None = typer.Option(None, help="token limit of one rewrite"),
    on_unfinished: str | None = typer.Option(None, help="z(0) cut by the limit: trim or reject"),
    generation_rows: int | None = typer.Option(None, help="sequences generated together"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs"),
) -> None:
    """Search REER thinking trajectories and store every revision."""
    _quiet_prefect(verbose)
    from pydantic import ValidationError

    from reer.settings import Settings

    options: dict = {}
    search = {
        k_: v
        for k_, v in dict(
            tau=tau,
            max_steps=max_steps,
            k=k,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            max_initial_tokens=max_initial_tokens,
            max_refine_tokens=max_refine_tokens,
            on_unfinished=on_unfinished,
        ).items()
        if v is not None
    }
    for key, value in dict(
        db=db, out=out_dir, dtype=dtype, generator_model=generator, scorer_model=scorer, generation_rows=generation_rows
    ).items():
        if value is not None:
            options[key] = str(value) if isinstance(value, Path) else value
    if search:
        options["search"] = {**Settings().search.model_dump(), **search}
    try:
        Settings(**options)
    except ValidationError as error:
        first = error.errors()[0]
        _fail(f"bad option {'.'.join(map(str, first['loc']))}: {first['msg']}")
    if from_store and inputs:
        _fail("give input files or --from-store, not both")
    missing = [str(p) for p in inputs or [] if not p.exists()]
    if inputs and len(missing) == len(inputs):
        _fail(f"no such input: {', '.join(missing)}")
    summary = _run_with_progress(inputs, limit, options, from_store)
    _print_summary(summary)


def _run_with_progress(inputs, limit, options, from_store: bool = False) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from reer.console import on_progress
    from reer.models.shipped import ModelNotFound
    from reer.settings import Settings
    from reer.store import StoreBusy, refuse_if_held

    progress = Progress(
        TextColumn("searching"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    bar = progress.add_task("search", total=None)
    on_progress(lambda done, total: progress.update(bar, completed=done, total=total))
    from reer.flows.synthesize import synthesize  # imported late: Prefect loads in seconds

    try:
        refuse_if_held(Settings(**options).db)  # a second writer hears so now, not after Prefect starts
        with progress:
            return synthesize(
                inputs=[str(p) for p in inputs] if inputs else None, limit=limit, options=options, from_store=from_store
            )
    except (StoreBusy, ModelNotFound) as error:
        _fail(str(error))
    except Exception as error:  # a user sees one line; Prefect's run log keeps the traceback
        _fail(
            f"run failed: {error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''} (details: reer run -v)"
        )
    except KeyboardInterrupt:
        Console(stderr=True).print(
            "[yellow]reer:[/yellow] interrupted; every finished search step is stored "
            "and the run is marked interrupted. Run the same command again to resume.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


def _print_summary(summary: dict) -> None:
    table = Table(title=f"reer run {summary['run_id']}", show_header=False, title_justify="left")
    rows = [
        ("items searched", summary["items"]),
        ("already done (skipped)", summary["skipped_done"]),
        ("resumed mid-search", summary.get("resumed", 0)),
        ("completed", summary["completed"]),
        ("rejected in search", summary["rejected_in_search"]),
        ("rejected inputs", summary["rejected_inputs"]),
        ("mean score, initial -> final", _pair(summary["mean_initial_score"], summary["mean_final_score"])),
        ("mean score drop", _num(summary["mean_score_drop"])),
        ("accepted edits / candidates", f"{summary['accepted_edits'] or 0} / {summary['candidates']}"),
        ("unparsable rewrites", summary["unparsable"]),
        ("rewrites repeating their segment", summary["unchanged"]),
        ("wall time", f"{summary['wall_seconds']} s"),
        ("items per hour", summary["items_per_hour"]),
        ("generated tokens/s", summary["generated_tokens_per_second"]),
        ("scored tokens/s", summary["scored_tokens_per_second"]),
        ("database", summary["db"]),
        ("passed every check", f"{summary.get('passed', '-')} of {summary['completed']}"),
        ("exported", summary["exported"].get("parquet", "")),
        ("data docs", summary.get("data_docs") or "-"),
        ("report", summary.get("report") or "-"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)
    for r in summary["rejects_by_reason"]:
        out.print(f"  rejected at {r['stage']}: {r['reason']} x{r['n']}")
    failing = {name: rate for name, rate in (summary.get("pass_rates") or {}).items() if rate < 1}
    for name, rate in failing.items():
        out.print(f"  check {name}: {100 * rate:.1f}% pass")


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pair(a, b) -> str:
    return f"{_num(a)} -> {_num(b)}"


@app.command()
def sql(
    query: str = typer.Argument(..., help="a read-only SQL query over the store's tables and views"),
    db: Path | None = typer.Option(None, help="DuckDB file"),
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
    db: Path | None = typer.Option(None, help="DuckDB file"),
) -> None:
    """An item's revisions with their scores, and its score per step drawn."""
    from reer.sql import read_sql
    from reer.store import StoreBusy, read_only_query

    try:
        revisions = read_only_query(_db(db), read_sql("queries/item_revisions"), item=item)
    except (StoreBusy, FileNotFoundError) as error:
        _fail(str(error))
    if revisions.is_empty():
        _fail(f'no trajectory matches {item!r} (list them: reer sql "SELECT trajectory_id FROM outcomes")')
    trajectory = revisions["trajectory_id"][0]
    revisions = revisions.filter(revisions["trajectory_id"] == trajectory)
    first = revisions.row(0, named=True)
    runs = ", ".join(dict.fromkeys(revisions["run_id"].to_list()))
    out.print(f"[bold]trajectory {trajectory}[/bold]  run {runs}  example {first['example_id']}")
    out.print(f"[dim]query:[/dim] {first['query'][:300]}")
    table = Table()
    for name in ("step", "segment", "cand", "status", "accepted", "score", "nll", "ppl", "text"):
        table.add_column(name, overflow="fold")
    for r in revisions.iter_rows(named=True):
        text = (r["segment_text"] if r["kind"] == "candidate" else r["thinking"]) or ""
        table.add_row(
            str(r["step"]),
            _dash(r["segment_index"]),
            _dash(r["candidate_index"]),
            r["status"],
            "yes" if r["accepted"] else "",
            _num(r["score"]),
            _num(r["nll"]),
            _num(r["ppl"]),
            text[:160].replace("\n", " ") + ("..." if len(text) > 160 else ""),
        )
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
    run_id: str | None = typer.Argument(None, help="run to export (default: the latest completed run)"),
    db: Path | None = typer.Option(None, help="DuckDB file"),
    out_dir: Path | None = typer.Option(None, "--out", help="export folder (default ./reer-out)"),
) -> None:
    """Write a run's passing trajectories (Parquet, JSONL), its full table and a dataset card."""
    _quiet_prefect(False)
    from reer.settings import Settings
    from reer.tasks.export import export_run, validated
    from reer.tasks.quality import validate_run

    settings = Settings()
    folder = out_dir or settings.out
    with _open_store(db) as store:
        run_id = _resolve_run(store, run_id)
        if not validated(store, run_id):
            out.print(f"run {run_id} has no validation yet: validating it first")
            _guarded(lambda: validate_run.fn(store, run_id, settings.quality, folder))
        result = _guarded(lambda: export_run.fn(store, run_id, folder))
    out.print(
        f"exported {result['rows']} of {result['table_rows']} trajectories of run {run_id} (those passing every check):"
    )
    for key in ("parquet", "jsonl", "table", "card"):
        out.print(f"  {result[key]}")
    if not result["rows"]:
        out.print(
            f'no trajectory passed every check; why: reer sql "SELECT trajectory_id, reasons FROM trajectory_verdicts '
            f"WHERE run_id = '{run_id}'\""
        )


@app.command()
def validate(
    run_id: str | None = typer.Argument(None, help="run to validate (default: the latest completed run)"),
    db: Path | None = typer.Option(None, help="DuckDB file"),
    out_dir: Path | None = typer.Option(None, "--out", help="Data Docs go to <out>/<run_id>/data_docs"),
) -> None:
    """Run the quality checks on a run's examples and trajectories; store every verdict."""
    _quiet_prefect(False)
    from reer.settings import Settings
    from reer.tasks.quality import check_specs, validate_run

    settings = Settings()
    with _open_store(db) as store:
        run_id = _resolve_run(store, run_id)
        result = _guarded(lambda: validate_run.fn(store, run_id, settings.quality, out_dir or settings.out))
        rates = store.query("SELECT * FROM check_pass_rates WHERE run_id = $run_id", run_id=run_id)
    _print_checks(rates, check_specs(settings.quality))
    out.print(
        f"{result['passed']} of {result['checked']} trajectories passed every check "
        f"({result['examples_checked']} examples checked); the view passed_trajectories holds them."
    )
    out.print(f"Data Docs: {result['data_docs'] or '(none: nothing to validate)'}")


def _print_checks(rates, specs) -> None:
    """Pass rate per check, in the order the checks are defined."""
    table = Table(title="checks", title_justify="left")
    for name in ("suite", "check", "bound", "passed", "pass rate"):
        table.add_column(name)
    order = {s.name: i for i, s in enumerate(specs)}
    signs = {s.name: ">=" if s.bound == "min" else "<=" for s in specs}
    for r in sorted(rates.iter_rows(named=True), key=lambda r: order.get(r["check_name"], len(order))):
        table.add_row(
            r["suite"],
            r["check_name"],
            f"{signs.get(r['check_name'], '')} {r['threshold']:g}",
            f"{r['passed']} / {r['checked']}",
            f"{100 * r['pass_rate']:.1f}%",
        )
    out.print(table)


@contextmanager
def _open_store(db: Path | None):
    """The store for writing, or one clear line if it is missing or busy."""
    from reer.store import Store, StoreBusy

    path = _db(db)
    if not path.exists():
        _fail(f"no reer database at {path} (run `reer run` first, or pass --db)")
    try:
        store = Store(path)
    except StoreBusy as error:
        _fail(str(error))
    try:
        yield store
    finally:
        store.close()


def _resolve_run(store, run_id: str | None) -> str:
    """The run asked for, or the latest completed one; one clear line if there is none."""
    if run_id is None:
        latest = store.query(
            "SELECT run_id FROM run_overview WHERE status = 'completed' ORDER BY started_at DESC LIMIT 1"
        )
        if latest.is_empty():
            _fail("no completed run in the store yet")
        return latest["run_id"][0]
    if store.query("SELECT 1 FROM runs WHERE run_id = $run_id", run_id=run_id).is_empty():
        _fail(f'no run {run_id!r} in the store (list them: reer sql "SELECT run_id, status FROM run_overview")')
    return run_id


def _guarded(step):
    """Run one step; an error becomes one line naming its kind (a user sees no traceback)."""
    try:
        return step()
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else ""
        _fail(f"{error.__class__.__name__}: {first}")


@app.command()
def ingest(
    inputs: list[Path] = typer.Argument(..., help="JSONL, JSON, CSV/TSV, Parquet, .txt/.md files or datasets folders"),
    db: Path | None = typer.Option(None, help="DuckDB file (default ./reer.duckdb, or REER_DB)"),
    fields: list[str] | None = typer.Option(
        None,
        "--map",
        help="role=field for files no declared source matches; repeat it: "
        "--map query=prompt --map reference=answer (query= : texts without requests)",
    ),
    no_model: bool = typer.Option(
        False, "--no-model", help="skip the model: no categories, token limits or written queries"
    ),
    dtype: str | None = typer.Option(None, help="bfloat16 (fast) or float32 (exact)"),
    generator: str | None = typer.Option(None, help="model that writes missing queries"),
    scorer: str | None = typer.Option(None, help="model that measures tokens and assigns categories"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs"),
) -> None:
    """Read files into the store's examples (no search); every record lands in examples or rejects."""
    _quiet_prefect(verbose)
    from pydantic import ValidationError

    from reer.models.shipped import ModelNotFound
    from reer.settings import Settings
    from reer.store import StoreBusy, refuse_if_held
    from reer.tasks.mappings import MappingError, field_pairs, parse_overrides

    options = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in dict(db=db, dtype=dtype, generator_model=generator, scorer_model=scorer).items()
        if v is not None
    }
    try:
        Settings(**options)
        mapping = field_pairs(fields)
        parse_overrides(mapping)
    except ValidationError as error:
        _fail(f"bad option {'.'.join(map(str, error.errors()[0]['loc']))}: {error.errors()[0]['msg']}")
    except MappingError as error:
        _fail(str(error))
    from reer.flows.ingest import ingest as ingest_flow  # imported late: Prefect loads in seconds

    try:
        refuse_if_held(Settings(**options).db)
        summary = ingest_flow(
            inputs=[str(p) for p in inputs], options=options, fields=mapping or None, use_model=not no_model
        )
    except (StoreBusy, ModelNotFound) as error:
        _fail(str(error))
    except Exception as error:  # a user sees one line; Prefect's run log keeps the traceback
        first = str(error).splitlines()[0] if str(error) else ""
        _fail(f"ingest failed: {error.__class__.__name__}: {first} (details: reer ingest -v)")
    _print_sources(summary["run_id"], summary["sources"])


@app.command()
def sources(
    run_id: str | None = typer.Argument(None, help="a run id (default: the latest run that read files)"),
    db: Path | None = typer.Option(None, help="DuckDB file"),
) -> None:
    """What a run read, per file: loaded, merged as duplicates, already stored, and rejected per reason."""
    from reer.sql import read_sql
    from reer.store import StoreBusy, read_only_query

    try:
        if run_id is None:
            latest = read_only_query(_db(db), "SELECT run_id FROM source_records ORDER BY created_at DESC LIMIT 1")
            if latest.is_empty():
                _fail("no run has read any file yet (reer ingest FILES...)")
            run_id = latest["run_id"][0]
        rows = read_only_query(_db(db), read_sql("queries/source_counts"), run_id=run_id).to_dicts()
    except (StoreBusy, FileNotFoundError) as error:
        _fail(str(error))
    if not rows:
        _fail(
            f'run {run_id!r} read no files (list runs: reer sql "SELECT run_id, flow_name, status FROM run_overview")'
        )
    _print_sources(run_id, rows)


SOURCE_STATUSES = ("loaded", "duplicate", "known", "over_limit", "rejected")


def _print_sources(run_id: str, rows: list[dict]) -> None:
    """One table row per file with its records per status, then its rejects per reason."""
    table = Table(
        title=f"sources read by run {run_id}",
        title_justify="left",
        caption_justify="left",
        caption="dupes: merged into the same pair read earlier in this run; known: stored by an earlier run",
    )
    table.add_column("source", overflow="fold", ratio=1)
    for name in ("read", "loaded", "dupes", "known", "over limit", "rejected"):
        table.add_column(name, justify="right", no_wrap=True)
    files = list(dict.fromkeys(r["source"] for r in rows))
    names = [Path(f).name for f in files]
    # File names keep the table narrow; full paths only where two files share a name.
    labels = {f: (n if names.count(n) == 1 else f) for f, n in zip(files, names)}
    for source in files:
        counts = {s: sum(r["n"] for r in rows if r["source"] == source and r["status"] == s) for s in SOURCE_STATUSES}
        table.add_row(labels[source], str(sum(counts.values())), *[str(counts[s]) for s in SOURCE_STATUSES])
    out.print(table)
    for source in files:
        for r in rows:
            if r["source"] == source and r["status"] == "rejected":
                out.print(f"  {labels[source]}: rejected {r['reason']} x{r['n']}")


@app.command()
def report(
    run_id: str | None = typer.Argument(None, help="run to report on (default: the latest completed synthesize run)"),
    db: Path | None = typer.Option(None, help="DuckDB file"),
    out_dir: Path | None = typer.Option(None, "--out", help="the report goes to <out>/<run_id>/report.html"),
) -> None:
    """Write a run's HTML report: score per step, improvement, acceptance per segment, throughput, rejects, checks."""
    from functools import partial

    from reer.settings import Settings
    from reer.store import StoreBusy, read_only_query
    from reer.tasks.report import build_report, latest_run

    query = partial(read_only_query, _db(db))
    try:
        run_id = run_id or latest_run(query)
        if run_id is None:
            _fail("no completed synthesize run in the store yet (reer run first)")
        written = build_report(query, run_id, out_dir or Settings().out)
    except (StoreBusy, FileNotFoundError) as error:
        _fail(str(error))
    except LookupError as error:
        _fail(f'{error} (list them: reer sql "SELECT run_id, flow_name, status FROM run_overview")')
    out.print(f"report of run {run_id}: {written}", soft_wrap=True)
    out.print(f"open it: {written.resolve().as_uri()}", soft_wrap=True)


@app.command()
def deploy(
    names: list[str] | None = typer.Argument(None, help="deployments to create (default: every one in prefect.yaml)"),
    port: int | None = typer.Option(
        None, help="the Prefect server on 127.0.0.1:PORT (default: PREFECT_API_URL, else 4200)"
    ),
) -> None:
    """Create prefect.yaml's work pool (if missing) and deployments on a running Prefect server."""
    _quiet_prefect(False)
    from reer.deployments import DeployError, api_url, server_answers
    from reer.deployments import deploy as deploy_all

    api = api_url(port)
    if not server_answers(api):
        _fail(f"no Prefect server answers at {api}; start one with `reer dashboard`")
    try:
        deployed = deploy_all(api, names or None)
    except DeployError as error:
        _fail(str(error))
    for name in deployed:
        out.print(f"deployed {name}", soft_wrap=True)
    out.print(
        f"runs start once a worker polls the pool: PREFECT_API_URL={api} prefect worker start --pool reer",
        soft_wrap=True,
    )


@app.command()
def serve(
    names: list[str] | None = typer.Argument(None, help="deployments to serve (default: every one in prefect.yaml)"),
    port: int | None = typer.Option(
        None, help="the Prefect server on 127.0.0.1:PORT (default: PREFECT_API_URL, else 4200)"
    ),
) -> None:
    """Serve prefect.yaml's deployments from this process: schedules run here, no pool or worker (Ctrl-C stops)."""
    _quiet_prefect(False)
    from reer.deployments import DeployError, api_url, runner_deployments, server_answers

    api = api_url(port)
    if not server_answers(api):
        _fail(f"no Prefect server answers at {api}; start one with `reer dashboard`")
    from prefect import serve as serve_deployments
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        try:
            deployments = runner_deployments(names or None)
        except DeployError as error:
            _fail(str(error))
        if not deployments:
            _fail(f"no deployment named {', '.join(names or [])} in prefect.yaml")
        try:
            serve_deployments(*deployments)
        except KeyboardInterrupt:
            out.print("stopped serving", soft_wrap=True)


@app.command()
def dashboard(
    port: int | None = typer.Option(None, help="serve on 127.0.0.1:PORT (default: PREFECT_API_URL's port, else 4200)"),
    foreground: bool = typer.Option(False, "--foreground", help="run the server in this terminal (Ctrl-C stops it)"),
    stop: bool = typer.Option(False, "--stop", help="stop the server an earlier `reer dashboard` started"),
    db: Path | None = typer.Option(None, help="DuckDB file, to find the latest report"),
    out_dir: Path | None = typer.Option(None, "--out", help="export folder, to find the latest report"),
) -> None:
    """Start the Prefect dashboard on 127.0.0.1 unless one answers; print where it and the latest report are."""
    import subprocess
    from urllib.parse import urlparse

    from reer.deployments import (
        ServerError,
        api_url,
        configured_api_url,
        port_of,
        server_answers,
        server_command,
        server_env,
        start_server,
        stop_server,
        ui_url,
    )
    from reer.settings import Settings

    settings = Settings()
    pid_path, log_path = settings.home / "prefect-server.pid", settings.home / "prefect-server.log"
    if stop:
        stopped = stop_server(pid_path)
        out.print("stopped the dashboard server" if stopped else "no server started by `reer dashboard` is running")
        return
    api = api_url(port)
    running = server_answers(api)
    if not running and urlparse(api).hostname not in ("127.0.0.1", "localhost"):
        _fail(f"PREFECT_API_URL is {api}, which does not answer; reer starts servers on 127.0.0.1 only (use --port)")
    if running:
        out.print(f"a Prefect server already answers at {api}", soft_wrap=True)
    elif not foreground:
        out.print(f"starting the Prefect server on 127.0.0.1:{port_of(api)} (log: {log_path})", soft_wrap=True)
        try:
            start_server(port_of(api), log_path, pid_path)
        except ServerError as error:
            _fail(str(error))
    out.print(f"dashboard: {ui_url(api)}", soft_wrap=True)
    if configured_api_url() != api:
        out.print(f"send runs there: export PREFECT_API_URL={api}", soft_wrap=True)
    _print_latest_report(db, out_dir or settings.out)
    if not running and not foreground:
        out.print("stop it: reer dashboard --stop", soft_wrap=True)
    if foreground and not running:
        settings.home.mkdir(parents=True, exist_ok=True)
        with suppress(KeyboardInterrupt):
            subprocess.run(server_command(port_of(api)), env=server_env(port_of(api)))


def _print_latest_report(db: Path | None, out_dir: Path) -> None:
    """Where the latest completed run's report is, or how to write it."""
    from functools import partial

    from reer.store import StoreBusy, read_only_query
    from reer.tasks.report import latest_run, report_path

    try:
        run_id = latest_run(partial(read_only_query, _db(db)))
    except (StoreBusy, FileNotFoundError) as error:
        out.print(f"latest report: unknown ({str(error).splitlines()[0]})", soft_wrap=True)
        return
    if run_id is None:
        out.print("latest report: none yet (reer run, then reer report)", soft_wrap=True)
        return
    path = report_path(out_dir, run_id)
    if path.exists():
        out.print(f"latest report: {path.resolve().as_uri()}", soft_wrap=True)
    else:
        out.print(f"latest report: not written yet for run {run_id} (reer report {run_id})", soft_wrap=True)


def main() -> None:
    """Entry point: run the command; keep the interpreter's teardown noise off the terminal."""
    try:
        app()
    except Exception as error:  # a bug, not bad input: one line, and the traceback when asked for
        if os.environ.get("REER_TRACEBACK"):
            import traceback

            traceback.print_exc()
        first = str(error).splitlines()[0] if str(error) else ""
        Console(stderr=True).print(
            f"[red]reer:[/red] unexpected {error.__class__.__name__}: {first} (REER_TRACEBACK=1 shows where)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # DuckDB's bindings list still-live objects as "leaks" at interpreter teardown. Every file
        # and connection is closed by now, so their stderr goes to /dev/null; exit handlers
        # (Prefect stops its temporary server in one) still run.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())


if __name__ == "__main__":
    main()
