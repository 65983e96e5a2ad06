"""`reer run` (search, store every revision, validate, export) and `reer ingest` (read files into the store)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from reer.cli.errors import fail, guarded, quiet_prefect, settings_from
from reer.cli.options import Db, Dtype, Out, Verbose

if TYPE_CHECKING:
    from reer.settings import Settings
    from reer.tasks.summary import RunSummary


SEARCH_OPTIONS = (
    "tau",
    "max_steps",
    "k",
    "temperature",
    "top_p",
    "seed",
    "max_initial_tokens",
    "max_refine_tokens",
    "on_unfinished",
)


def run(
    inputs: list[Path] = typer.Argument(
        None, help="JSONL, JSON, CSV, Parquet, text files or datasets folders; default: the bundled sample"
    ),
    limit: int | None = typer.Option(None, help="search at most this many examples"),
    from_store: bool = typer.Option(
        False,
        "--from-store",
        help="search the stored examples with no finished (completed or rejected) trajectory under these settings (what `reer ingest` stored)",
    ),
    db: Db = None,
    out_dir: Out = None,
    dtype: Dtype = None,
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
    workers: int | None = typer.Option(
        None, help="search in this many shards, each a Ray task with its own models (1; more needs a DuckLake --db)"
    ),
    ray_address: str | None = typer.Option(
        None, help="the Ray cluster for --workers (RAY_ADDRESS; default: a local one for this run)"
    ),
    verbose: Verbose = False,
) -> None:
    """Search REER thinking trajectories and store every revision."""
    quiet_prefect(verbose)
    given = locals()  # the options as typed; the search ones go to settings.search
    search = {name: given[name] for name in SEARCH_OPTIONS if given[name] is not None}
    settings = settings_from(
        db=db,
        out=out_dir,
        dtype=dtype,
        generator_model=generator,
        scorer_model=scorer,
        generation_rows=generation_rows,
        workers=workers,
        ray_address=ray_address,
        search=search or None,
    )
    problem = settings.workers_problem()
    if problem:
        fail(problem)
    if from_store and inputs:
        fail("give input files or --from-store, not both")
    missing = [str(p) for p in inputs or [] if not p.exists()]
    if inputs and len(missing) == len(inputs):
        fail(f"no such input: {', '.join(missing)}")
    from reer.cli.rendering import print_summary

    print_summary(search_with_progress(settings, inputs, limit, from_store))


def search_with_progress(
    settings: Settings, inputs: list[Path] | None, limit: int | None, from_store: bool
) -> RunSummary:
    """The synthesize flow with the search's progress on stderr; any failure, or Ctrl-C, is one line."""
    from reer.cli.progress import SearchDisplay
    from reer.lake import LakeUnavailable
    from reer.models.shipped import ModelNotFound
    from reer.store import StoreBusy, refuse_if_held

    def run_failed():  # a user sees one line; Prefect's run log keeps the traceback
        return guarded("run failed: ", " (details: reer run -v)", clear=(StoreBusy, LakeUnavailable, ModelNotFound))

    with run_failed():
        refuse_if_held(settings.db)  # a second writer hears so now, before Prefect or a model starts
    from reer.flows.synthesize import synthesize  # imported late: Prefect loads in seconds

    try:
        with run_failed(), SearchDisplay():  # the last progress line, then any error
            return synthesize(
                inputs=[str(p) for p in inputs] if inputs else None,
                limit=limit,
                options=settings,
                from_store=from_store,
            )
    except KeyboardInterrupt:
        fail(
            "interrupted; every finished search step is stored and the run is marked interrupted. "
            "Run the same command again to resume.",
            code=130,
            style="yellow",
        )


def ingest(
    inputs: list[Path] = typer.Argument(..., help="JSONL, JSON, CSV/TSV, Parquet, .txt/.md files or datasets folders"),
    db: Db = None,
    fields: list[str] | None = typer.Option(
        None,
        "--map",
        help="role=field for files no declared source matches; repeat it: "
        "--map query=prompt --map reference=answer (query= : texts without requests)",
    ),
    no_model: bool = typer.Option(
        False, "--no-model", help="skip the model: no categories, token limits or written queries"
    ),
    dtype: Dtype = None,
    generator: str | None = typer.Option(None, help="model that writes missing queries"),
    scorer: str | None = typer.Option(None, help="model that measures tokens and assigns categories"),
    verbose: Verbose = False,
) -> None:
    """Read files into the store's examples (no search); every record lands in examples or rejects."""
    quiet_prefect(verbose)
    from reer.cli.rendering import print_sources
    from reer.lake import LakeUnavailable
    from reer.models.shipped import ModelNotFound
    from reer.store import StoreBusy, refuse_if_held
    from reer.tasks.mappings import MappingError, field_pairs, parse_overrides

    settings = settings_from(db=db, dtype=dtype, generator_model=generator, scorer_model=scorer)
    try:
        mapping = field_pairs(fields)
        parse_overrides(mapping)
    except MappingError as error:
        fail(str(error))

    def ingest_failed():  # a user sees one line; Prefect's run log keeps the traceback
        return guarded(
            "ingest failed: ", " (details: reer ingest -v)", clear=(StoreBusy, LakeUnavailable, ModelNotFound)
        )

    with ingest_failed():
        refuse_if_held(settings.db)
    from reer.flows.ingest import ingest as ingest_flow  # imported late: Prefect loads in seconds

    with ingest_failed():
        summary = ingest_flow(
            inputs=[str(p) for p in inputs], options=settings, fields=mapping or None, use_model=not no_model
        )
    print_sources(summary["run_id"], summary["sources"])
