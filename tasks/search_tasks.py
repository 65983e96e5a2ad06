"""The search stage against the store: plan each example's search, resume stored ones, drive them, store each step.

`tasks/search.py` holds the pure state machine and its batching driver; this module gives
them their inputs from the store and writes their records back, one transaction per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.console import SearchProgress, notice, report_progress
from reer.ids import stable_id
from reer.kill_points import kill_point
from reer.models.base import LanguageModel, ModelUnavailable
from reer.settings import SearchConfig
from reer.sql import read_sql
from reer.tasks.driver import FeedingMode, InFlight, drive
from reer.tasks.prompts import PROMPT_VERSION
from reer.tasks.records import Example, OutcomeRecord, Rejected, RevisionRecord
from reer.tasks.scoring import split_reference
from reer.tasks.search import ItemSearch, Record, SearchItem


@dataclass(frozen=True)
class TrajectoryKey:
    """What identifies a trajectory: the example under the search settings, prompts, models and seed."""

    trajectory_id: str
    seed: int  # the item's own seed, derived from the base seed and the example


def trajectory_key(
    example_id: str, config: SearchConfig, generator_fingerprint: str, scorer_fingerprint: str
) -> TrajectoryKey:
    """The same inputs always give the same key; any changed setting or model content gives a new one.

    Models enter by fingerprint, not by name: two folders called checkpoint-500 are two models.
    """
    trajectory_id = stable_id(
        example_id, config.fingerprint(), PROMPT_VERSION, generator_fingerprint, scorer_fingerprint, config.seed
    )
    return TrajectoryKey(trajectory_id, int(stable_id(config.seed, example_id), 16) & (2**63 - 1))


def plan_search(
    example: Example, key: TrajectoryKey, config: SearchConfig, count_tokens: Callable[[str], int], context_window: int
) -> SearchItem | Rejected:
    """The item to search for `example`, or why its reference cannot be scored."""
    split = split_reference(example.reference, config.min_segment_chars)
    needed = count_tokens(example.query) + count_tokens(example.reference) + config.thinking_reserve()
    if split is None:
        reason, detail = (
            "reference_single_segment",
            "the reference is one segment: nothing is left to score after its first",
        )
    elif needed > context_window:
        reason = "reference_too_long"
        detail = f"query, reference and thinking need {needed} tokens; the scorer reads {context_window}"
    else:
        return SearchItem(
            key.trajectory_id, example.example_id, example.query, split, example.reference, example.language, key.seed
        )
    return Rejected(
        example.source,
        example.source_record,
        reason,
        detail,
        example_id=example.example_id,
        stage="search",
        trajectory_id=key.trajectory_id,
    )


def rejected_outcome(rejected: Rejected) -> OutcomeRecord:
    """The outcome of a trajectory rejected before its search: it is finished, like one the search rejected."""
    return OutcomeRecord(
        trajectory_id=rejected.trajectory_id,
        status="rejected",
        reason=rejected.reason,
        final_revision_id=None,
        initial_score=None,
        final_score=None,
        steps=0,
        accepted_edits=0,
        segments=0,  # no thinking was written to segment
        note=rejected.detail,
    )


@dataclass
class Prepared:
    searches: list[ItemSearch]
    skipped_done: int
    rejected: int
    resumed: int = 0


def stored_progress(store) -> tuple[set[str], dict[str, list[RevisionRecord]]]:
    """Trajectories with an outcome (finished), and the stored revisions of those without one (to resume)."""
    done = set(store.query("SELECT DISTINCT trajectory_id FROM outcomes")["trajectory_id"].to_list())
    stored: dict[str, list[RevisionRecord]] = {}
    for row in store.query(read_sql("queries/unfinished_revisions")).iter_rows(named=True):
        stored.setdefault(row["trajectory_id"], []).append(RevisionRecord(**row))
    return done, stored


@task(cache_policy=NO_CACHE)
def prepare_searches(
    store,
    run_id: str,
    examples: Sequence[Example],
    config: SearchConfig,
    generator: LanguageModel,
    scorer: LanguageModel,
    verifier: LanguageModel | None = None,
) -> Prepared:
    """One search per example, resumed from its stored steps; references that cannot be scored are rejected.

    With a `verifier` other than the scorer, each search has its acceptances verified by it in float32.
    """
    # A trajectory with an outcome is finished (completed or rejected): the same inputs and
    # settings would only repeat it. One without is resumed from its stored steps.
    done, stored = stored_progress(store)
    searches, trajectories, rejects, finished = [], [], [], []
    for ex in examples:
        key = trajectory_key(ex.example_id, config, generator.fingerprint, scorer.fingerprint)
        # Every trajectory the run covers gets a row, finished ones too: validation and export
        # of this run then see the same trajectories however many reruns it took.
        attempt = {
            "trajectory_id": key.trajectory_id,
            "run_id": run_id,
            "example_id": ex.example_id,
            "config_hash": config.fingerprint(),
            "prompt_version": PROMPT_VERSION,
            "generator_model": generator.model_id,
            "scorer_model": scorer.model_id,
            "generator_fingerprint": generator.fingerprint,
            "scorer_fingerprint": scorer.fingerprint,
            "seed": key.seed,
            "language": ex.language,
            "start": "finished",
        }
        if key.trajectory_id in done:
            trajectories.append(attempt)
            continue
        planned = plan_search(ex, key, config, scorer.count_tokens, scorer.context_window)
        if isinstance(planned, Rejected):
            # Finished like a search that ended rejected (a trajectory row, an outcome, one reject):
            # the next run and the pending queue pass it by instead of rejecting it again.
            rejects.append(planned)
            trajectories.append({**attempt, "start": "rejected"})
            notice(planned.line())
            continue
        query_prompt = scorer.render_chat([("user", ex.query)])
        search, records = ItemSearch.resume(
            planned,
            config,
            query_prompt,
            scorer.count_tokens,
            stored.get(key.trajectory_id, []),
            verifying=verifier is not None and verifier is not scorer,
        )
        searches.append(search)
        finished.extend(records)
        trajectories.append({**attempt, "start": "resumed" if key.trajectory_id in stored else "new"})

    def store_plan(con) -> None:
        store.append(con, "trajectories", trajectories)
        store.append(con, "outcomes", [{**rejected_outcome(r).__dict__, "run_id": run_id} for r in rejects])
        store.append(con, "rejects", [r.row(run_id) for r in rejects])

    store.atomically(store_plan)
    if finished:
        store_sink(store, run_id)(finished)
    skipped = sum(1 for t in trajectories if t["start"] == "finished")
    resumed = sum(1 for s in searches if s.best is not None)
    return Prepared(searches, skipped, len(rejects), resumed)


def search_rejects(records: Sequence[Record]) -> list[Rejected]:
    """A reject for every search that ended rejected; its detail is the outcome's note, else its revision's."""
    notes: dict[str, str] = {}
    for r in records:
        if isinstance(r, RevisionRecord) and r.note:
            notes.setdefault(r.trajectory_id, r.note)
    return [
        Rejected(
            None, None, o.reason, o.note or notes.get(o.trajectory_id), stage="search", trajectory_id=o.trajectory_id
        )
        for o in records
        if isinstance(o, OutcomeRecord) and o.status == "rejected"
    ]


def store_sink(store, run_id: str) -> Callable[[list[Record]], None]:
    """A sink that writes one batch of records in one transaction."""

    def write(records: list[Record]) -> None:
        revisions = [
            {**r.__dict__, "run_id": run_id, "prompt_version": PROMPT_VERSION}
            for r in records
            if isinstance(r, RevisionRecord)
        ]
        outcomes = [{**o.__dict__, "run_id": run_id} for o in records if isinstance(o, OutcomeRecord)]

        def store_batch(con) -> None:
            store.append(con, "revisions", revisions)
            kill_point("storing")  # a crash here must leave none of this batch's rows
            store.append(con, "outcomes", outcomes)
            store.append(con, "rejects", [r.row(run_id) for r in search_rejects(records)])

        store.atomically(store_batch)

    return write


def steps_in(records: Sequence[Record]) -> int:
    """Search steps these records complete: each scored z(0), and each refinement step."""
    initial = sum(1 for r in records if isinstance(r, RevisionRecord) and r.kind == "initial" and r.status == "scored")
    refined = {(r.trajectory_id, r.step) for r in records if isinstance(r, RevisionRecord) and r.kind == "candidate"}
    return initial + len(refined)


def retry_on_model_errors(task, task_run, state) -> bool:
    """Prefect retries the search only when a model stopped answering; other errors are bugs or bad data."""
    try:
        state.result()
    except ModelUnavailable:
        return True
    except BaseException:
        return False
    return False


class SearchMonitor:
    """Progress of one search run: the terminal, the Prefect progress artifact, and the readers' snapshot."""

    ARTIFACT_SECONDS = 1.0  # the driver stores often; the Prefect API hears of it at most this often

    def __init__(
        self, store, run_id: str, total: int, generator, scorer, snapshot_seconds: float, traffic: InFlight
    ) -> None:
        from prefect.artifacts import create_progress_artifact

        self.store, self.total, self.snapshot_seconds = store, total, snapshot_seconds
        self.generator, self.scorer, self.traffic = generator, scorer, traffic
        self.artifact_at = float("-inf")
        self.generated0, self.scored0 = generator.stats.generated_tokens, scorer.stats.scored_tokens
        self.started = self.published = time.monotonic()
        self.steps = 0
        self.description = f"reer run {run_id}: items searched"
        self.artifact = create_progress_artifact(progress=0.0, description=self.description)
        if snapshot_seconds:
            store.publish_snapshot()  # readers get the prepared run at once, then every snapshot_seconds
        self.report(0)

    def counting(self, sink: Callable[[list[Record]], None]) -> Callable[[list[Record]], None]:
        """The sink, counting the steps it stores."""

        def write(records: list[Record]) -> None:
            sink(records)
            self.steps += steps_in(records)

        return write

    def report(self, done: int) -> None:
        report_progress(
            SearchProgress(
                items_done=done,
                items_total=self.total,
                steps=self.steps,
                generated_tokens=self.generator.stats.generated_tokens - self.generated0,
                scored_tokens=self.scorer.stats.scored_tokens - self.scored0,
                seconds=time.monotonic() - self.started,
                busy=self.traffic.busy(),
            )
        )

    def on_batch(self, done: int, total: int) -> None:
        from prefect.artifacts import update_progress_artifact

        self.report(done)
        now = time.monotonic()
        if self.artifact is not None and total and (done == total or now - self.artifact_at >= self.ARTIFACT_SECONDS):
            busy = ", ".join(f"{model} {share:.0%} busy" for model, share in self.traffic.busy().items())
            update_progress_artifact(
                artifact_id=self.artifact,
                progress=100.0 * done / total,
                description=f"{self.description}: {done} of {total}" + (f" ({busy})" if busy else ""),
            )
            self.artifact_at = now
        if self.snapshot_seconds and time.monotonic() - self.published >= self.snapshot_seconds:
            self.store.publish_snapshot()
            self.published = time.monotonic()


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_on_model_errors)
def search_examples(
    store,
    run_id: str,
    searches: list[ItemSearch],
    generator,
    scorer,
    generation_rows: int,
    snapshot_seconds: float = 0.0,
    verifier=None,
    feeding: FeedingMode = "auto",
    store_seconds: float = 0.2,
) -> dict:
    """Drive every search to its end, storing each step before the item's next, with progress; what was in flight.

    A model that stops answering fails the task; Prefect retries it (see `retry_on_model_errors`)
    and the searches go on from their last stored transition, which is where they are in memory.
    """
    from prefect.runtime import task_run

    from reer.interrupts import stop_after_batch

    if task_run.run_count > 1:  # a retry: count it where users look
        detail = {"attempt": task_run.run_count, "task": "search_examples"}
        store.write("run_events", [{"run_id": run_id, "status": "retrying", "detail": detail}])
    traffic = InFlight()
    monitor = SearchMonitor(store, run_id, len(searches), generator, scorer, snapshot_seconds, traffic)
    with stop_after_batch() as stop_requested:
        drive(
            searches,
            generator,
            scorer,
            monitor.counting(store_sink(store, run_id)),
            verifier=verifier,
            generation_rows=generation_rows,
            feeding=feeding,
            store_seconds=store_seconds,
            on_batch=monitor.on_batch,
            stop_requested=stop_requested,
            traffic=traffic,
        )
    monitor.report(len(searches))
    return traffic.figures()


def search_with_retries(
    store, run_id: str, searches: list[ItemSearch], models, settings, snapshot_seconds: float
) -> dict:
    """`search_examples` with the run's model retries, batching and feeding; what was in flight.

    `models` are the run's (generator, scorer, verifier); `settings` its Settings.
    """
    from prefect.tasks import exponential_backoff

    generator, scorer, verifier = models
    search = search_examples.with_options(
        retries=settings.model_retries, retry_delay_seconds=exponential_backoff(settings.retry_backoff_seconds)
    )
    return search(
        store,
        run_id,
        searches,
        generator,
        scorer,
        settings.generation_rows,
        snapshot_seconds,
        verifier,
        feeding=settings.feeding,
        store_seconds=settings.store_seconds,
    )
