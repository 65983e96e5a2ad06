"""The `synthesize` flow: source, prepare, search, check, export, summarize."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

import reer
from reer.flows.runs import complete_run, new_run_id, recorded_run
from reer.models.loading import load_model
from reer.settings import Settings
from reer.sql import read_sql
from reer.store import Store
from reer.tasks.context import PROMPT_VERSION
from reer.tasks.export import export_run
from reer.tasks.quality import validate_run
from reer.tasks.search import prepare_searches, search_examples
from reer.tasks.mappings import parse_overrides
from reer.tasks.sourcing import bundled_sample, load_examples, select_pending, thinking_reserve


def code_version() -> str:
    """reer's version and, in a git checkout, the commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{reer.__version__}+{commit}" if commit else reer.__version__


def load_models(settings: Settings):
    """Generator and scorer (one object when they name the same model)."""
    common = dict(backend=settings.backend, dtype=settings.dtype, home=settings.home, threads=settings.threads,
                  generation_rows=settings.generation_rows, score_batch_tokens=settings.score_batch_tokens)
    return load_model(settings.generator_model, **common), load_model(settings.scorer_model, **common)


@flow(name="synthesize", log_prints=True)
def synthesize(inputs: list[str] | None = None, limit: int | None = None, options: dict | None = None,
               from_store: bool = False) -> dict:
    """Search REER thinking for every (query, reference) pair in `inputs` (default: the bundled sample).

    With `from_store`, search the stored examples that have no completed trajectory under
    this configuration instead (what `ingest` stored), reading no files.
    """
    settings = Settings(**(options or {}))
    started = time.perf_counter()
    run_id = new_run_id()
    paths = [Path(p) for p in inputs] if inputs else [bundled_sample()]
    generator, scorer = load_models(settings)
    store = Store(settings.db)
    with recorded_run(store, {
            "run_id": run_id, "flow_run_id": flow_run.id, "flow_name": "synthesize",
            "config": settings.model_dump(mode="json"), "config_hash": settings.search.fingerprint(),
            "generator_model": generator.model_id, "scorer_model": scorer.model_id, "backend": settings.backend,
            "dtype": settings.dtype, "prompt_version": PROMPT_VERSION, "code_version": code_version(),
    }):
        if from_store:
            loaded = select_pending(store, settings.search, PROMPT_VERSION, generator.model_id, scorer.model_id, limit)
        else:
            loaded = load_examples(store, run_id, paths, limit, scorer=scorer, generator=generator,
                                   override=parse_overrides(settings.source_fields),
                                   reserve=thinking_reserve(settings.search))
        prepared = prepare_searches(store, run_id, loaded.examples, settings.search, generator, scorer)
        before = (generator.stats.__dict__.copy(), scorer.stats.__dict__.copy())
        search_examples(store, run_id, prepared.searches, generator, scorer, settings.generation_rows)
        checks = validate_run(store, run_id, settings.quality, settings.out)
        exported = export_run(store, run_id, settings.out)
        summary = summarize(store, run_id, time.perf_counter() - started, generator, scorer, before)
        summary.update(run_id=run_id, db=str(settings.db), exported=exported, checks=checks,
                       passed=checks["passed"], pass_rates=checks["pass_rates"], data_docs=checks["data_docs"],
                       duplicates=loaded.duplicates, skipped_done=prepared.skipped_done,
                       resumed=prepared.resumed)
        complete_run(store, run_id, summary)
        create_markdown_artifact(markdown=summary_markdown(summary), key="reer-run-summary",
                                 description=f"reer run {run_id}")
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
        "SELECT stage, reason, count(*) AS n FROM rejects WHERE run_id = $run_id GROUP BY ALL ORDER BY n DESC", run_id=run_id
    ).to_dicts()
    summary.update(
        wall_seconds=round(seconds, 1),
        items_per_hour=round(3600 * (summary["completed"] or 0) / seconds, 1) if seconds else None,
        generated_tokens_per_second=round(gen_tokens / gen_seconds, 1) if gen_seconds else None,
        scored_tokens_per_second=round(scored / score_seconds, 1) if score_seconds else None,
    )
    return summary


def summary_markdown(summary: dict) -> str:
    """The run summary as a Prefect markdown artifact."""
    def fmt(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    keys = ["items", "completed", "rejected_in_search", "rejected_inputs", "mean_initial_score", "mean_final_score",
            "mean_score_drop", "accepted_edits", "revisions", "unparsable", "wall_seconds", "items_per_hour",
            "generated_tokens_per_second", "scored_tokens_per_second"]
    lines = [f"# reer run `{summary['run_id']}`", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {fmt(summary.get(k))} |" for k in keys]
    if summary["rejects_by_reason"]:
        lines += ["", "## Rejected", "", "| stage | reason | count |", "|---|---|---|"]
        lines += [f"| {r['stage']} | {r['reason']} | {r['n']} |" for r in summary["rejects_by_reason"]]
    lines += ["", f"Passed every check: {summary.get('passed')} of {summary.get('completed')}"]
    if summary.get("pass_rates"):
        lines += ["", "## Pass rate per check", "", "| check | pass rate |", "|---|---|"]
        lines += [f"| {name} | {rate:.1%} |" for name, rate in summary["pass_rates"].items()]
    lines += ["", f"Exported: `{summary['exported'].get('parquet', '')}`", f"Data Docs: `{summary.get('data_docs')}`"]
    return "\n".join(lines)
