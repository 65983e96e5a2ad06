"""The `synthesize` flow: source, prepare, search, check, export, summarize."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

import reer
from reer.flows.naming import run_tags, source_label, synthesize_run_name, tag_flow_run
from reer.flows.publish import publish_run
from reer.flows.runs import new_run_id, recorded_run
from reer.kill_points import kill_point
from reer.models.loading import load_model
from reer.settings import Settings
from reer.store import Store
from reer.tasks.ingest import bundled_sample, ingest_examples, select_pending
from reer.tasks.mappings import parse_overrides
from reer.tasks.prompts import PROMPT_VERSION
from reer.tasks.search_tasks import prepare_searches, search_examples
from reer.tasks.summary import RunSummary, SearchWork


def code_version() -> str:
    """reer's version and, in a git checkout, the commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{reer.__version__}+{commit}" if commit else reer.__version__


def load_models(settings: Settings):
    """Generator and scorer, each on its own backend (one object when model and backend are the same)."""
    return (
        load_model(settings.model_spec("generator")),
        load_model(settings.model_spec("scorer")),
    )


@flow(name="synthesize", log_prints=True, flow_run_name=synthesize_run_name)
def synthesize(
    inputs: list[str] | None = None,
    limit: int | None = None,
    options: dict[str, Any] | Settings | None = None,
    from_store: bool = False,
) -> RunSummary:
    """Search REER thinking for every (query, reference) pair in `inputs` (default: the bundled sample).

    With `from_store`, search the stored examples that have no completed trajectory under
    this configuration instead (what `ingest` stored), reading no files.
    """
    settings = Settings.of(options)
    started = time.perf_counter()
    run_id = new_run_id()
    paths = [Path(p) for p in inputs] if inputs else [bundled_sample()]
    store = Store(settings.db)  # first: a second writer is refused before it loads any model
    generator, scorer = load_models(settings)
    with recorded_run(
        store,
        {
            "run_id": run_id,
            "flow_run_id": flow_run.id,
            "flow_name": "synthesize",
            "config": settings.model_dump(mode="json"),
            "config_hash": settings.search.fingerprint(),
            "generator_model": generator.model_id,
            "scorer_model": scorer.model_id,
            "backend": settings.backend_label(),
            "dtype": settings.dtype,
            "prompt_version": PROMPT_VERSION,
            "code_version": code_version(),
        },
    ):
        tag_flow_run(
            run_tags(
                source_label(inputs, from_store), generator.model_id, scorer.model_id, settings.search.fingerprint()
            )
        )
        if from_store:
            loaded = select_pending(store, settings.search, PROMPT_VERSION, generator.model_id, scorer.model_id, limit)
        else:
            loaded = ingest_examples(
                store,
                run_id,
                paths,
                limit,
                scorer=scorer,
                generator=generator,
                override=parse_overrides(settings.source_fields),
                reserve=settings.search.thinking_reserve(),
            )
        kill_point("sourced")
        prepared = prepare_searches(store, run_id, loaded.examples, settings.search, generator, scorer)
        kill_point("prepared")
        before = (replace(generator.stats), replace(scorer.stats))
        search = search_examples.with_options(
            retries=settings.model_retries, retry_delay_seconds=exponential_backoff(settings.retry_backoff_seconds)
        )
        search(store, run_id, prepared.searches, generator, scorer, settings.generation_rows, settings.snapshot_seconds)
        work = SearchWork(
            started=started,
            generated_tokens=generator.stats.generated_tokens - before[0].generated_tokens,
            generation_seconds=generator.stats.generation_seconds - before[0].generation_seconds,
            scored_tokens=scorer.stats.scored_tokens - before[1].scored_tokens,
            scoring_seconds=scorer.stats.scoring_seconds - before[1].scoring_seconds,
            duplicates=loaded.duplicates,
            skipped_done=prepared.skipped_done,
            resumed=prepared.resumed,
        )
        return publish_run(store, run_id, settings, finishing=work)
