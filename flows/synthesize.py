"""The `synthesize` flow: source, prepare, search, check, export, summarize."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

import reer
from reer.flows.naming import flow_run_url, run_tags, source_label, synthesize_run_name, tag_flow_run
from reer.flows.runs import complete_run, new_run_id, recorded_run
from reer.kill_points import kill_point
from reer.models.loading import load_model
from reer.settings import Settings
from reer.sql import read_sql
from reer.store import Store
from reer.tasks.artifacts import create_run_artifacts
from reer.tasks.export import export_run
from reer.tasks.ingest import bundled_sample, ingest_examples, select_pending
from reer.tasks.mappings import parse_overrides
from reer.tasks.prompts import PROMPT_VERSION
from reer.tasks.quality import validate_run
from reer.tasks.report import write_report
from reer.tasks.search import prepare_searches, search_examples


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
) -> dict:
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
        before = (generator.stats.__dict__.copy(), scorer.stats.__dict__.copy())
        search = search_examples.with_options(
            retries=settings.model_retries, retry_delay_seconds=exponential_backoff(settings.retry_backoff_seconds)
        )
        search(store, run_id, prepared.searches, generator, scorer, settings.generation_rows, settings.snapshot_seconds)
        checks = validate_run(store, run_id, settings.quality, settings.out)
        kill_point("validated")
        exported = export_run(store, run_id, settings.out)
        kill_point("exported")
        summary = summarize(store, run_id, time.perf_counter() - started, generator, scorer, before)
        summary.update(
            run_id=run_id,
            db=str(settings.db),
            exported=exported,
            checks=checks,
            passed=checks["passed"],
            pass_rates=checks["pass_rates"],
            data_docs=checks["data_docs"],
            duplicates=loaded.duplicates,
            skipped_done=prepared.skipped_done,
            resumed=prepared.resumed,
        )
        kill_point("summarized")
        complete_run(store, run_id, summary)
        # After 'completed' is stored, so the report shows the run as it ended.
        summary.update(flow_run_url=flow_run_url())
        summary["report"] = write_report(store, run_id, settings.out, summary["flow_run_url"])
        create_run_artifacts(store.query, summary)
        return summary


def summarize(store: Store, run_id: str, seconds: float, generator, scorer, before) -> dict:
    """The run's figures from SQL, plus wall time and throughput."""
    summary = store.query(read_sql("queries/run_summary"), run_id=run_id).to_dicts()[0]
    gen0, sc0 = before
    gen_tokens = generator.stats.generated_tokens - gen0["generated_tokens"]
    gen_seconds = generator.stats.generation_seconds - gen0["generation_seconds"]
    score_seconds = scorer.stats.scoring_seconds - sc0["scoring_seconds"]
    scored = scorer.stats.scored_tokens - sc0["scored_tokens"]
    summary["rejects_by_reason"] = store.query(
        "SELECT stage, reason, count(*) AS n FROM rejects WHERE run_id = $run_id GROUP BY ALL ORDER BY n DESC",
        run_id=run_id,
    ).to_dicts()
    summary.update(
        wall_seconds=round(seconds, 1),
        items_per_hour=round(3600 * (summary["completed_here"] or 0) / seconds, 1) if seconds else None,
        generated_tokens_per_second=round(gen_tokens / gen_seconds, 1) if gen_seconds else None,
        scored_tokens_per_second=round(scored / score_seconds, 1) if score_seconds else None,
    )
    return summary
