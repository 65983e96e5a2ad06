"""The `publish` flow: validate a finished synthesize run, export what passes, write its report.

Scheduled after the nightly search (prefect.yaml: publish-nightly); `reer validate`, `reer export`
and `reer report` do the same steps one at a time.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow

from reer.flows.naming import flow_run_url, publish_run_name, tag_flow_run
from reer.settings import Settings
from reer.sql import read_sql
from reer.store import Store
from reer.tasks.artifacts import create_run_artifacts
from reer.tasks.export import export_run
from reer.tasks.quality import validate_run
from reer.tasks.report import latest_run, write_report


@flow(name="publish", log_prints=True, flow_run_name=publish_run_name)
def publish(run_id: str | None = None, options: dict[str, Any] | Settings | None = None) -> dict:
    """Validate, export and report one synthesize run (default: the latest completed one)."""
    settings = Settings.of(options)
    store = Store(settings.db)
    try:
        run_id = run_id or latest_run(store.query)
        if run_id is None:
            raise LookupError(f"no completed synthesize run in {settings.db}")
        if store.query("SELECT 1 FROM runs WHERE run_id = $run_id", run_id=run_id).is_empty():
            raise LookupError(f"no run {run_id!r} in {settings.db}")
        tag_flow_run(["reer", f"run:{run_id}"])
        checks = validate_run(store, run_id, settings.quality, settings.out)
        exported = export_run(store, run_id, settings.out)
        summary = run_figures(store, run_id)
        summary.update(
            run_id=run_id,
            db=str(settings.db),
            exported=exported,
            checks=checks,
            passed=checks["passed"],
            pass_rates=checks["pass_rates"],
            data_docs=checks["data_docs"],
            flow_run_url=flow_run_url(),
        )
        summary["report"] = write_report(store, run_id, settings.out, summary["flow_run_url"])
        create_run_artifacts(store.query, summary)
        print(f"published run {run_id}: {exported['rows']} rows exported, report {summary['report']}")
        return summary
    finally:
        store.close()


def run_figures(store: Store, run_id: str) -> dict:
    """What the run recorded when it completed (wall time, throughput), refreshed with the store's figures."""
    detail = store.query(
        "SELECT detail FROM run_overview WHERE run_id = $run_id AND status = 'completed'", run_id=run_id
    )
    recorded = json.loads(detail["detail"][0]) if detail.height and detail["detail"][0] else {}
    figures = store.query(read_sql("queries/run_summary"), run_id=run_id).to_dicts()[0]
    rejects = store.query(read_sql("queries/report_rejects"), run_id=run_id).select("stage", "reason", "n").to_dicts()
    return {**recorded, **figures, "rejects_by_reason": rejects}
