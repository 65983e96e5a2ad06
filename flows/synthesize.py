"""The `synthesize` flow: source, prepare, search, controls, check, export, summarize."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.tasks import exponential_backoff

from reer.flows.cluster import ShardWork, WorkersNeedLake, search_on_workers
from reer.flows.naming import run_tags, source_label, synthesize_run_name, tag_flow_run
from reer.flows.publish import publish_run
from reer.flows.run_options import run_settings
from reer.flows.runs import load_models, load_verifier, model_stats, new_run_id, recorded_run, run_row, work_since
from reer.flows.store_turn import open_store
from reer.kill_points import kill_point
from reer.settings import Settings
from reer.tasks.controls import compute_controls
from reer.tasks.ingest import bundled_sample, ingest_examples, select_pending
from reer.tasks.mappings import parse_overrides
from reer.tasks.prompts import PROMPT_VERSION
from reer.tasks.search_tasks import prepare_searches, search_with_retries
from reer.tasks.summary import RunSummary, SearchWork


@flow(name="synthesize", log_prints=True, flow_run_name=synthesize_run_name)
def synthesize(
    inputs: list[str] | None = None,
    limit: int | None = None,
    options: dict[str, Any] | Settings | None = None,
    from_store: bool = False,
    workers: int | None = None,
) -> RunSummary:
    """Search REER thinking for every (query, reference) pair in `inputs` (default: the bundled sample).

    With `from_store`, search the stored examples that have no finished (completed or rejected) trajectory under
    this configuration instead (what `ingest` stored), reading no files. `workers` (default: the setting) over 1
    searches in that many shards on Ray (flows/cluster.py); validation, controls and export still run once, here.
    """
    settings = run_settings(options)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    problem = settings.workers_problem()
    if problem:  # before the store opens or a model loads
        raise WorkersNeedLake(problem)
    started = time.perf_counter()
    run_id = new_run_id()
    paths = [Path(p) for p in inputs] if inputs else [bundled_sample()]
    store = open_store(settings)  # first: a second writer waits or is refused before it loads any model
    generator, scorer = load_models(settings)
    verifier = load_verifier(settings, scorer)
    run = run_row(run_id, "synthesize", settings, generator, scorer, PROMPT_VERSION, settings.search.fingerprint())
    with recorded_run(store, run):
        tag_flow_run(
            run_tags(
                source_label(inputs, from_store), generator.model_id, scorer.model_id, settings.search.fingerprint()
            )
        )
        if from_store:
            loaded = select_pending(
                store, settings.search, PROMPT_VERSION, generator.fingerprint, scorer.fingerprint, limit
            )
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
        prepared = prepare_searches(store, run_id, loaded.examples, settings.search, generator, scorer, verifier)
        kill_point("prepared")
        before = model_stats(generator, scorer, verifier)
        if settings.workers > 1:
            # The shards plan their items again in their workers; here only which trajectory goes where is needed.
            pending = {s.item.example_id: s.item.trajectory_id for s in prepared.searches if not s.done}
            shard_work = search_on_workers(settings, run_id, pending)
            traffic = {"busy": shard_work.busy(), "in_flight": []}  # each worker's timeline stays its own
        else:
            models = (generator, scorer, verifier)
            traffic = search_with_retries(store, run_id, prepared.searches, models, settings, settings.snapshot_seconds)
            shard_work = ShardWork()
        done = work_since(before, generator, scorer, verifier)
        work = SearchWork(
            started=started,
            **{name: done[name] + getattr(shard_work, name) for name in done},
            duplicates=loaded.duplicates,
            skipped_done=prepared.skipped_done,
            resumed=prepared.resumed,
            busy=traffic["busy"],
            in_flight=traffic["in_flight"],
        )
        # The controls (no thinking, another item's thinking) go in before validation, whose checks read them.
        controls = compute_controls.with_options(
            retries=settings.model_retries, retry_delay_seconds=exponential_backoff(settings.retry_backoff_seconds)
        )
        controls(store, run_id, verifier, settings.search)
        return publish_run(store, run_id, settings, finishing=work)
