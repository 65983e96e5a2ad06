"""The `ingest` flow: read files into the store only, so a schedule can store new examples for a later search."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from reer.flows.naming import ingest_run_name, run_tags, source_label, tag_flow_run
from reer.flows.run_options import run_settings
from reer.flows.runs import complete_run, load_models, new_run_id, recorded_run, run_row
from reer.flows.store_turn import open_store
from reer.settings import Settings
from reer.sql import read_sql
from reer.store import Store
from reer.tasks.ingest import ingest_examples
from reer.tasks.mappings import parse_overrides
from reer.tasks.query_writing import QUERY_PROMPT_VERSION


@flow(name="ingest", log_prints=True, flow_run_name=ingest_run_name)
def ingest(
    inputs: list[str],
    options: dict[str, Any] | Settings | None = None,
    fields: dict[str, str] | None = None,
    use_model: bool = True,
) -> dict:
    """Read `inputs` into the store's examples; every record lands in examples or rejects.

    With the model: token limits, categories and queries for texts without one. Without it
    (`use_model=False`), examples keep only their given categories and texts without a
    request are rejected.
    """
    settings = run_settings(options)
    run_id = new_run_id()
    override = parse_overrides(fields or settings.source_fields)
    store = open_store(settings)  # first: a second writer waits or is refused before it loads any model
    generator, scorer = load_models(settings) if use_model else (None, None)
    run = run_row(run_id, "ingest", settings, generator, scorer, QUERY_PROMPT_VERSION)
    with recorded_run(store, run):
        tag_flow_run(
            run_tags(source_label(inputs), getattr(generator, "model_id", None), getattr(scorer, "model_id", None))
        )
        loaded = ingest_examples(
            store,
            run_id,
            expand_inputs(inputs),
            scorer=scorer,
            generator=generator,
            override=override,
            reserve=settings.search.thinking_reserve(),
        )
        summary = {
            "run_id": run_id,
            "db": str(settings.db),
            "examples": len(loaded.examples),
            **loaded.counts,
            "sources": source_counts(store, run_id),
        }
        complete_run(store, run_id, summary)
        create_markdown_artifact(
            markdown=sources_markdown(summary), key="reer-ingest-summary", description=f"reer ingest {run_id}"
        )
        return summary


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Paths, with glob patterns (incoming/*.jsonl) expanded in sorted order, so a schedule can name a drop folder.

    A pattern that matches nothing adds nothing; a plain path is kept even if missing (it is rejected as such).
    """
    paths: list[Path] = []
    for item in inputs:
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        paths += [Path(m) for m in matches]
    return paths


def source_counts(store: Store, run_id: str) -> list[dict]:
    """Per source file: records per status, and rejected ones per reason."""
    return store.query(read_sql("queries/source_counts"), run_id=run_id).to_dicts()


def sources_markdown(summary: dict) -> str:
    """The ingest summary as a Prefect markdown artifact."""
    lines = [f"# reer ingest `{summary['run_id']}`", "", "| source | status | reason | records |", "|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['status']} | {r['reason']} | {r['n']} |" for r in summary["sources"]]
    return "\n".join(lines)
