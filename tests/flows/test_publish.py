"""The publish flow on a crafted store: it validates, exports, writes the report and returns the run's summary."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from reer.tasks.summary import RunSummary, SearchWork
from tests.tasks.crafted import CLEAN, fill_store

pytestmark = pytest.mark.prefect

FAILING = {**CLEAN["b"], "initial_finish_reason": "length"}  # cut by the token limit: fails thinking_closed


def rows(db, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """`publish()` with no run id, as the nightly deployment calls it, on a store of one passing and one failing run."""
    from prefect.client.orchestration import get_client

    from reer.flows.publish import publish

    tmp = tmp_path_factory.mktemp("publish")
    fill_store(tmp / "reer.duckdb", [CLEAN["a"], FAILING]).close()
    options = {"db": str(tmp / "reer.duckdb"), "out": str(tmp / "out")}
    state = publish(options=options, return_state=True)
    summary = state.result()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    return summary, flow_run, tmp


def test_publish_returns_the_summary_of_the_latest_completed_run(published):
    summary, _, tmp = published
    assert isinstance(summary, RunSummary)
    assert (summary.run_id, summary.db) == ("run-1", str(tmp / "reer.duckdb"))
    assert (summary.items, summary.completed, summary.passed) == (2, 2, 1)
    assert summary.checks["checked"] == 2 and summary.checks["failed"] == 1
    assert summary.pass_rates["trajectories.thinking_closed"] == 0.5
    assert summary.exported["rows"] == 1 and summary.exported["table_rows"] == 2


def test_publish_validates_and_exports_into_the_runs_folder(published):
    summary, _, tmp = published
    folder = tmp / "out" / "run-1"
    db = tmp / "reer.duckdb"
    assert summary.data_docs == str(folder / "data_docs" / "index.html") and Path(summary.data_docs).is_file()
    files = {"parquet": "train.parquet", "jsonl": "train.jsonl", "table": "trajectories.parquet", "card": "README.md"}
    for key, name in files.items():
        assert summary.exported[key] == str(folder / name) and (folder / name).is_file()
    assert rows(db, "SELECT count(*) FROM validations WHERE run_id = 'run-1'") == [(1,)]
    assert dict(rows(db, "SELECT format, count(*) FROM exports GROUP BY ALL")) == {"parquet": 1, "jsonl": 1, "table": 2}
    (passed,) = rows(db, "SELECT trajectory_id FROM passed_trajectories")
    assert passed == ("traj-a",)


def test_publish_writes_the_report_and_leaves_the_runs_status_alone(published):
    summary, _, tmp = published
    report = tmp / "out" / "run-1" / "report.html"
    assert summary.report == str(report) and report.is_file()
    assert "run-1" in report.read_text(encoding="utf-8")
    # publishing a run that already completed adds no status: its recorded figures stay its own
    assert rows(tmp / "reer.duckdb", "SELECT status FROM run_events WHERE run_id = 'run-1'") == [("completed",)]


def test_the_flow_run_is_named_and_tagged_for_the_dashboard_and_the_store_is_closed(published):
    _, flow_run, tmp = published
    assert flow_run.name == "publish-latest"
    assert {"reer", "run:run-1"} <= set(flow_run.tags)
    assert flow_run.state.is_completed()
    child = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()", str(tmp / "reer.duckdb")]
    )
    assert child.returncode == 0  # the flow let go of the file


def test_publish_refuses_an_unknown_run_or_an_empty_store(tmp_path):
    from reer.flows.publish import publish

    fill_store(tmp_path / "reer.duckdb", [CLEAN["a"]]).close()
    options = {"db": str(tmp_path / "reer.duckdb"), "out": str(tmp_path / "out")}
    with pytest.raises(LookupError, match="no run 'nope' in"):
        publish(run_id="nope", options=options)
    with pytest.raises(LookupError, match="no completed synthesize run in"):
        publish(options={"db": str(tmp_path / "empty.duckdb"), "out": str(tmp_path / "out")})
    assert not (tmp_path / "out").exists()


def test_publish_run_finishing_a_search_stores_its_summary_as_completed(tmp_path):
    from prefect import flow

    from reer.flows.publish import publish_run
    from reer.settings import Settings
    from reer.store import Store

    @flow(name="finishing-search")
    def finishing(store, settings, work):  # as the synthesize flow ends: publish_run inside its flow run
        return publish_run(store, "run-1", settings, finishing=work)

    fill_store(tmp_path / "reer.duckdb", [CLEAN["a"], CLEAN["b"]]).close()
    store = Store(tmp_path / "reer.duckdb")
    settings = Settings(db=tmp_path / "reer.duckdb", out=tmp_path / "out")
    work = SearchWork(time.perf_counter() - 60, 1200, 10.0, 3000, 6.0, 0, 0, 0)
    try:
        summary = finishing(store, settings, work)
        assert summary.passed == 2 and summary.exported["rows"] == 2
        assert summary.generated_tokens_per_second == 120.0 and summary.scored_tokens_per_second == 500.0
        assert Path(summary.report).is_file()
        statuses = store.query("SELECT status, detail FROM run_events WHERE run_id = 'run-1' ORDER BY created_at")
        assert statuses["status"].to_list() == ["completed", "completed"]
        stored = json.loads(statuses["detail"][1])
        assert stored["wall_seconds"] == summary.wall_seconds and stored["passed"] == 2
        assert stored["report"] is None  # stored before the report is written, as the docstring says
    finally:
        store.close()
