"""The `publish` flow: validate a finished synthesize run, export what passes, write its report.

Scheduled after the nightly search (prefect.yaml: publish-nightly); `reer validate`, `reer export`
and `reer report` do the same steps one at a time.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from reer.flows.naming import flow_run_url, publish_run_name, tag_flow_run
from reer.flows.run_options import run_settings
from reer.flows.runs import complete_run
from reer.flows.store_turn import open_store
from reer.kill_points import kill_point
from reer.settings import Settings
from reer.store import Store
from reer.tasks.artifacts import create_run_artifacts
from reer.tasks.export import export_run
from reer.tasks.quality import validate_run
from reer.tasks.report import latest_run, write_report
from reer.tasks.summary import RunSummary, SearchWork, summarize_run


def publish_run(store: Store, run_id: str, settings: Settings, finishing: SearchWork | None = None) -> RunSummary:
    """Validate, export, summarize, report and publish artifacts for one run.

    `finishing` is the measured work of a synthesize run that ends here: its summary is stored
    with its 'completed' status before the report, so the report shows the run as it ended.
    """
    checks = validate_run(store, run_id, settings.quality, settings.out)
    kill_point("validated")
    exported = export_run(store, run_id, settings.out)
    kill_point("exported")
    summary = summarize_run(store, run_id, str(settings.db), checks, exported, finishing)
    if finishing is not None:
        kill_point("summarized")
        complete_run(store, run_id, summary.to_dict())
    summary.flow_run_url = flow_run_url()
    summary.report = write_report(store, run_id, settings.out, summary.flow_run_url)
    create_run_artifacts(store.query, summary)
    return summary


@flow(name="publish", log_prints=True, flow_run_name=publish_run_name)
def publish(run_id: str | None = None, options: dict[str, Any] | Settings | None = None) -> RunSummary:
    """Validate, export and report one synthesize run (default: the latest completed one)."""
    settings = run_settings(options)
    store = open_store(settings)
    try:
        run_id = run_id or latest_run(store.query)
        if run_id is None:
            raise LookupError(f"no completed synthesize run in {settings.db}")
        if store.query("SELECT 1 FROM runs WHERE run_id = $run_id", run_id=run_id).is_empty():
            raise LookupError(f"no run {run_id!r} in {settings.db}")
        tag_flow_run(["reer", f"run:{run_id}"])
        summary = publish_run(store, run_id, settings)
        print(f"published run {run_id}: {summary.exported['rows']} rows exported, report {summary.report}")
        files = store.compact()  # a lake writes a Parquet file per commit: merge them (a DuckDB file: nothing)
        if files:
            print(f"compacted the lake: {files['data_files_before']} data files, now {files['data_files_after']}")
        return summary
    finally:
        store.close()
