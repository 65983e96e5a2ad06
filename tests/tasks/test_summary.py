"""The run summary: figures equal to SQL over a crafted store, and the run's own measurements (given or recorded)."""

from __future__ import annotations

import json
import time

import pytest

from reer.flows.runs import complete_run
from reer.tasks.summary import MEASURED, RunSummary, SearchWork, measured_figures, recorded_figures, summarize_run
from tests.tasks.crafted import CLEAN, fill_store

CHECKS = {"passed": 1, "pass_rates": {"trajectories.thinking_closed": 0.5}, "data_docs": "/docs/index.html"}
EXPORTED = {"rows": 1, "table_rows": 2}


def revision(revision_id: str, trajectory_id: str, run_id: str, **values) -> dict:
    row = {
        "revision_id": revision_id,
        "trajectory_id": trajectory_id,
        "run_id": run_id,
        "kind": "candidate",
        "step": 1,
        "thinking": "...",
        "accepted": False,
        "status": "scored",
        "generated_tokens": None,
        "scored_tokens": None,
    }
    return {**row, **values}


@pytest.fixture()
def store(tmp_path):
    """run-1 completes traj-a and traj-b; run-2 covers traj-a again (finished) and rejects a new traj-c."""
    store = fill_store(tmp_path / "reer.duckdb", [CLEAN["a"], CLEAN["b"]])
    store.write("runs", [{"run_id": "run-2", "flow_name": "synthesize"}])
    store.write(
        "trajectories",
        [
            {"trajectory_id": "traj-a", "run_id": "run-2", "example_id": "ex-a", "start": "finished"},
            {"trajectory_id": "traj-c", "run_id": "run-2", "example_id": "ex-a", "start": "new"},
        ],
    )
    store.write(
        "revisions",
        [
            revision("c0", "traj-c", "run-2", kind="initial", step=0, accepted=True, generated_tokens=300),
            revision("c1", "traj-c", "run-2", status="unparsable", generated_tokens=50),
            revision("c2", "traj-c", "run-2", status="unchanged", generated_tokens=40),
            revision("c3", "traj-c", "run-2", generated_tokens=60, scored_tokens=700, score=0.5),
            revision("c4", "traj-c", "run-2", status="context_overflow", generated_tokens=30),
        ],
    )
    store.write(
        "outcomes",
        [
            {
                "trajectory_id": "traj-c",
                "run_id": "run-2",
                "status": "rejected",
                "reason": "too_short",
                "accepted_edits": 0,
            }
        ],
    )
    store.write(
        "rejects",
        [
            {"run_id": "run-2", "stage": "sourcing", "reason": "malformed_json", "detail": "line 1"},
            {"run_id": "run-2", "stage": "sourcing", "reason": "malformed_json", "detail": "line 2"},
            {"run_id": "run-2", "stage": "sourcing", "reason": "no_reference", "detail": "line 3"},
            {"run_id": "run-2", "stage": "search", "reason": "too_short", "detail": "traj-c"},
            {"run_id": "run-1", "stage": "sourcing", "reason": "empty", "detail": "another run's"},
        ],
    )
    store.write("run_events", [{"run_id": "run-2", "status": s} for s in ("running", "retrying", "retrying")])
    yield store
    store.close()


def one(store, sql: str, **params):
    return store.query(sql, **params).rows()[0][0]


def test_figures_equal_sql_counts_for_a_run_that_covers_an_earlier_runs_work(store):
    summary = summarize_run(store, "run-2", "/x/reer.duckdb", CHECKS, EXPORTED, None)
    covered = "FROM trajectories t JOIN outcomes o USING (trajectory_id) WHERE t.run_id = 'run-2'"
    mine = "FROM revisions WHERE run_id = 'run-2'"
    expected = {
        "items": one(store, "SELECT count(*) FROM trajectories WHERE run_id = 'run-2'"),
        "completed": one(store, f"SELECT count(*) {covered} AND o.status = 'completed'"),
        "rejected_in_search": one(store, f"SELECT count(*) {covered} AND o.status = 'rejected'"),
        "completed_here": one(store, f"SELECT count(*) {covered} AND o.status = 'completed' AND o.run_id = 'run-2'"),
        "rejected_inputs": one(store, "SELECT count(*) FROM rejects WHERE run_id = 'run-2' AND stage = 'sourcing'"),
        "mean_initial_score": one(store, f"SELECT avg(o.initial_score) {covered} AND o.status = 'completed'"),
        "mean_final_score": one(store, f"SELECT avg(o.final_score) {covered} AND o.status = 'completed'"),
        "accepted_edits": one(store, f"SELECT sum(o.accepted_edits) {covered}"),
        "revisions": one(store, f"SELECT count(*) {mine}"),
        "candidates": one(store, f"SELECT count(*) {mine} AND kind = 'candidate'"),
        "unparsable": one(store, f"SELECT count(*) {mine} AND status = 'unparsable'"),
        "unchanged": one(store, f"SELECT count(*) {mine} AND status = 'unchanged'"),
        "context_overflow": one(store, f"SELECT count(*) {mine} AND status = 'context_overflow'"),
        "generated_tokens": one(store, f"SELECT sum(generated_tokens) {mine}"),
        "scored_tokens": one(store, f"SELECT sum(scored_tokens) {mine}"),
        "model_retries": one(store, "SELECT count(*) FROM run_events WHERE run_id = 'run-2' AND status = 'retrying'"),
    }
    assert {k: getattr(summary, k) for k in expected} == pytest.approx(expected)
    # ... and the numbers themselves, so the SQL above cannot drift with the query it checks
    assert (summary.items, summary.completed, summary.rejected_in_search, summary.completed_here) == (2, 1, 1, 0)
    assert (summary.revisions, summary.candidates, summary.unparsable, summary.unchanged) == (5, 4, 1, 1)
    assert (summary.context_overflow, summary.generated_tokens, summary.scored_tokens) == (1, 480, 700)
    assert summary.model_retries == 2
    assert summary.mean_score_drop == pytest.approx(0.9 - 0.7) and summary.rejected_inputs == 3
    assert summary.rejects_by_reason == [
        {"stage": "sourcing", "reason": "malformed_json", "n": 2},
        {"stage": "search", "reason": "too_short", "n": 1},
        {"stage": "sourcing", "reason": "no_reference", "n": 1},
    ]


def test_the_first_run_and_what_the_caller_passes(store):
    summary = summarize_run(store, "run-1", "/x/reer.duckdb", CHECKS, EXPORTED, None)
    assert (summary.run_id, summary.db) == ("run-1", "/x/reer.duckdb")
    assert (summary.items, summary.completed, summary.completed_here, summary.rejected_in_search) == (2, 2, 2, 0)
    assert summary.mean_initial_score == pytest.approx((0.9 + 0.8) / 2)
    assert summary.mean_final_score == pytest.approx((0.7 + 0.6) / 2)
    assert summary.generated_tokens is None  # the crafted revisions recorded no token counts
    assert summary.rejects_by_reason == [{"stage": "sourcing", "reason": "empty", "n": 1}]
    assert (summary.passed, summary.pass_rates, summary.data_docs) == (1, CHECKS["pass_rates"], "/docs/index.html")
    assert summary.checks == CHECKS and summary.exported == EXPORTED
    assert summary.flow_run_url is None and summary.report is None


def test_an_unknown_run_is_all_zeros_not_an_error(store):
    summary = summarize_run(store, "nope", "db", CHECKS, {}, None)
    assert (summary.items, summary.completed, summary.revisions, summary.model_retries) == (0, 0, 0, 0)
    assert summary.mean_final_score is None and summary.rejects_by_reason == []
    assert all(getattr(summary, k) is None for k in MEASURED)


# -- what the run measured of itself ------------------------------------------------------------


def test_a_search_works_measurements_give_rates(store):
    work = SearchWork(
        started=time.perf_counter() - 100,
        generated_tokens=5000,
        generation_seconds=50.0,
        scored_tokens=12000,
        scoring_seconds=40.0,
        duplicates=3,
        skipped_done=4,
        resumed=5,
    )
    summary = summarize_run(store, "run-1", "db", CHECKS, EXPORTED, work)
    assert 100.0 <= summary.wall_seconds < 102
    assert summary.items_per_hour == pytest.approx(3600 * 2 / summary.wall_seconds, abs=0.2)  # completed here: 2
    assert (summary.generated_tokens_per_second, summary.scored_tokens_per_second) == (100.0, 300.0)
    assert (summary.duplicates, summary.skipped_done, summary.resumed) == (3, 4, 5)


def test_no_model_time_means_no_rate_and_nothing_completed_here_means_zero_per_hour():
    work = SearchWork(time.perf_counter() - 10, 0, 0.0, 0, 0.0, 0, 0, 0)
    figures = measured_figures(work, None)
    assert figures["generated_tokens_per_second"] is None and figures["scored_tokens_per_second"] is None
    assert figures["items_per_hour"] == 0.0 and figures["wall_seconds"] >= 10
    assert set(figures) == set(MEASURED)


def test_without_a_search_work_the_completed_events_figures_are_read(store):
    busy = {"generator": 0.9, "scorer": 0.5}
    recorded = {
        "wall_seconds": 12.5,
        "items_per_hour": 576.0,
        "generated_tokens_per_second": 33.3,
        "resumed": 1,
        "busy": busy,
    }
    complete_run(store, "run-1", {**recorded, "items": 999})
    summary = summarize_run(store, "run-1", "db", CHECKS, EXPORTED, None)
    assert {k: getattr(summary, k) for k in MEASURED} == {
        "wall_seconds": 12.5,
        "items_per_hour": 576.0,
        "generated_tokens_per_second": 33.3,
        "scored_tokens_per_second": None,  # not recorded
        "duplicates": None,
        "skipped_done": None,
        "resumed": 1,
        "busy": busy,
        "in_flight": None,
    }
    assert summary.items == 2  # the store's figures come from SQL, never from the recorded detail


def test_a_run_whose_latest_status_is_not_completed_has_no_recorded_figures(store):
    assert recorded_figures(store, "run-2") == dict.fromkeys(MEASURED)  # still running
    complete_run(store, "run-2", {"wall_seconds": 1.0})
    assert recorded_figures(store, "run-2")["wall_seconds"] == 1.0
    store.write("run_events", [{"run_id": "run-2", "status": "failed"}])  # e.g. publishing it failed later
    assert recorded_figures(store, "run-2")["wall_seconds"] == 1.0  # what it measured stays readable


def test_a_summary_stored_at_completion_reads_back_the_same(store):
    work = SearchWork(time.perf_counter() - 20, 900, 3.0, 2000, 4.0, 1, 2, 3)
    measured = summarize_run(store, "run-1", "db", CHECKS, EXPORTED, work)
    complete_run(store, "run-1", measured.to_dict())
    detail = json.loads(one(store, "SELECT detail FROM run_overview WHERE run_id = 'run-1'"))
    assert detail == json.loads(json.dumps(measured.to_dict()))
    again = summarize_run(store, "run-1", "db", CHECKS, EXPORTED, None)
    assert again == measured and isinstance(again, RunSummary)


def test_score_history_counts_a_steps_candidates_by_why_they_were_not_scored(store):
    row = store.query("SELECT * FROM score_history WHERE trajectory_id = 'traj-c' AND step = 1").to_dicts()[0]
    assert (row["candidates"], row["unparsable"], row["unchanged"], row["context_overflow"]) == (4, 1, 1, 1)
