"""Quality checks on finished trajectories; each returns pass or fail with what it observed."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.store import Store

_SENTENCE_END = tuple(".!?…。！？」』”\"')")


@dataclass(frozen=True)
class CheckResult:
    """One check on one trajectory: a row of `checks`."""

    check_name: str
    passed: bool
    observed: float
    threshold: float
    detail: str


def basic_checks(row: dict, min_thinking_tokens: int = 100) -> list[CheckResult]:
    """The checks every exported trajectory gets: monotone score, length, a concluded last segment."""
    drop = row["initial_score"] - row["final_score"]
    concluded = row["thinking"].rstrip().endswith(_SENTENCE_END)
    return [
        CheckResult("score_not_worse", drop >= 0, drop, 0.0, "initial minus final score"),
        CheckResult(
            "min_thinking_tokens", row["thinking_tokens"] >= min_thinking_tokens, row["thinking_tokens"],
            min_thinking_tokens, "tokens in the final thinking",
        ),
        CheckResult("ends_a_sentence", concluded, float(concluded), 1.0, "the last segment ends a sentence"),
    ]


@task(cache_policy=NO_CACHE)
def check_trajectories(store: Store, run_id: str, min_thinking_tokens: int) -> dict[str, int]:
    """Run the basic checks on a run's completed trajectories and store every result."""
    from reer.sql import read_sql

    rows = store.query(read_sql("queries/export_rows"), run_id=run_id).to_dicts()
    results = [
        {"run_id": run_id, "trajectory_id": row["trajectory_id"], "suite": "basic", **c.__dict__}
        for row in rows
        for c in basic_checks(row, min_thinking_tokens)
    ]
    store.write("checks", results)
    return {"checked": len(rows), "failed": sum(not r["passed"] for r in results)}
