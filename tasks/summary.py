"""A run's summary: the store's figures, what the run measured of itself, and what publishing wrote.

Built in one place (`summarize_run`); the CLI, the artifacts, the report and the 'completed'
event all read the same `RunSummary`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from reer.sql import read_sql
from reer.store import Store


@dataclass(frozen=True)
class SearchWork:
    """What a synthesize run measured of itself: time, model work, and how it found its items."""

    started: float  # time.perf_counter() when the run started; wall time counts up to its summary
    generated_tokens: int
    generation_seconds: float
    scored_tokens: int
    scoring_seconds: float
    duplicates: int
    skipped_done: int
    resumed: int
    busy: dict[str, float] = field(default_factory=dict)  # each model's share of the search with a call in flight
    in_flight: list[dict] = field(default_factory=list)  # mean sequences in flight per model, over time


@dataclass
class RunSummary:
    """One run in figures: the store's counts and scores, the run's own measurements, what publishing wrote."""

    run_id: str
    db: str
    # from sql/queries/run_summary.sql: outcomes and scores of every trajectory the run covers
    items: int = 0
    completed: int = 0
    rejected_in_search: int = 0
    completed_here: int = 0
    rejected_inputs: int = 0
    mean_initial_score: float | None = None
    mean_final_score: float | None = None
    mean_score_drop: float | None = None
    accepted_edits: int | None = None
    revisions: int = 0
    candidates: int = 0
    unparsable: int = 0
    unchanged: int = 0
    context_overflow: int = 0  # rewrites set aside unscored: their scoring exceeded the scorer's window
    generated_tokens: int | None = None
    scored_tokens: int | None = None
    model_retries: int = 0
    rejects_by_reason: list[dict[str, Any]] = field(default_factory=list)  # stage, reason, n
    # measured by the synthesize run itself (SearchWork), kept with its 'completed' status
    wall_seconds: float | None = None
    items_per_hour: float | None = None
    generated_tokens_per_second: float | None = None
    scored_tokens_per_second: float | None = None
    duplicates: int | None = None
    skipped_done: int | None = None
    resumed: int | None = None
    busy: dict[str, float] | None = None  # each model's share of the search with a call in flight
    in_flight: list[dict] | None = None  # mean sequences in flight per model, over the search
    # what publishing wrote
    checks: dict[str, Any] = field(default_factory=dict)
    passed: int | None = None
    pass_rates: dict[str, float] = field(default_factory=dict)
    data_docs: str | None = None
    exported: dict[str, Any] = field(default_factory=dict)
    flow_run_url: str | None = None
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MEASURED = (
    "wall_seconds",
    "items_per_hour",
    "generated_tokens_per_second",
    "scored_tokens_per_second",
    "duplicates",
    "skipped_done",
    "resumed",
    "busy",
    "in_flight",
)


def measured_figures(work: SearchWork, completed_here: int | None) -> dict[str, Any]:
    """Wall time, items per hour and tokens per second from what the run measured."""
    seconds = time.perf_counter() - work.started
    return {
        "wall_seconds": round(seconds, 1),
        "items_per_hour": round(3600 * (completed_here or 0) / seconds, 1) if seconds else None,
        "generated_tokens_per_second": round(work.generated_tokens / work.generation_seconds, 1)
        if work.generation_seconds
        else None,
        "scored_tokens_per_second": round(work.scored_tokens / work.scoring_seconds, 1)
        if work.scoring_seconds
        else None,
        "duplicates": work.duplicates,
        "skipped_done": work.skipped_done,
        "resumed": work.resumed,
        "busy": work.busy,
        "in_flight": work.in_flight,
    }


def recorded_figures(store: Store, run_id: str) -> dict[str, Any]:
    """What the run measured of itself, as stored with its 'completed' status (nothing if it never completed)."""
    detail = store.query(read_sql("queries/completed_detail"), run_id=run_id)
    recorded = json.loads(detail["detail"][0]) if detail.height and detail["detail"][0] else {}
    return {k: recorded.get(k) for k in MEASURED}


def summarize_run(
    store: Store, run_id: str, db: str, checks: dict[str, Any], exported: dict[str, Any], work: SearchWork | None
) -> RunSummary:
    """The summary of a run: figures from SQL, the run's measurements (given, or as it recorded them), its checks."""
    figures = store.query(read_sql("queries/run_summary"), run_id=run_id).to_dicts()[0]
    rejects = store.query(read_sql("queries/report_rejects"), run_id=run_id).select("stage", "reason", "n").to_dicts()
    measured = measured_figures(work, figures["completed_here"]) if work else recorded_figures(store, run_id)
    return RunSummary(
        run_id=run_id,
        db=str(db),
        **figures,
        rejects_by_reason=rejects,
        **measured,
        checks=checks,
        passed=checks["passed"],
        pass_rates=checks["pass_rates"],
        data_docs=checks["data_docs"],
        exported=exported,
    )
