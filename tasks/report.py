"""A run's HTML report: one self-contained file (inline CSS and SVG, no scripts, no network).

Built only from SQL over the store (sql/queries/report_*.sql), so `reer report` can rebuild it
for any stored run; the synthesize flow writes it to <out>/<run_id>/report.html at its end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.sql import read_sql
from reer.tasks.controls import control_figures, run_margin
from reer.tasks.report_page import render

REPORT = "report.html"

Query = Callable[..., pl.DataFrame]  # query(sql, **params) -> frame: Store.query, or a read-only one


@dataclass
class ReportData:
    """Everything the report shows, as rows from the store."""

    run_id: str
    header: dict[str, Any]
    figures: dict[str, Any]
    items: list[dict]
    steps: list[dict]
    segments: list[dict]
    throughput: list[dict]
    rejects: list[dict]
    checks: list[dict]
    links: dict[str, str] = field(default_factory=dict)
    controls: list[dict] = field(default_factory=list)  # per control: n, mean gain, share beating it (controls.py)
    margin: float = 0.0  # the run's accept_margin: a gain counts when at least this


def report_data(query: Query, run_id: str) -> ReportData:
    """Read a run's report rows; a run the store does not hold is a LookupError."""
    header = query(read_sql("queries/report_header"), run_id=run_id).to_dicts()
    if not header:
        raise LookupError(f"no run {run_id!r} in the store")
    rows = {
        name: query(read_sql(f"queries/report_{name}"), run_id=run_id).to_dicts()
        for name in ("items", "steps", "segments", "throughput", "rejects", "checks")
    }
    figures = query(read_sql("queries/run_summary"), run_id=run_id).to_dicts()[0]
    # The driver's figures are JSON in the 'completed' detail: each model's busy share, and a timeline.
    head = {**header[0], "busy": json.loads(header[0]["busy"] or "{}")}
    head["in_flight"] = json.loads(header[0]["in_flight"] or "[]")
    return ReportData(
        run_id,
        head,
        figures,
        **rows,
        controls=control_figures(query, run_id),
        margin=run_margin(query, run_id),
    )


def latest_run(query: Query, flow_name: str = "synthesize") -> str | None:
    """The latest completed run of a flow, or None."""
    rows = query(
        "SELECT run_id FROM run_overview WHERE status = 'completed' AND flow_name = $flow "
        "ORDER BY started_at DESC LIMIT 1",
        flow=flow_name,
    )
    return rows["run_id"][0] if rows.height else None


def report_path(out_dir: Path, run_id: str) -> Path:
    """Where a run's report lives."""
    return Path(out_dir) / run_id / REPORT


def run_links(out_dir: Path, run_id: str, data: ReportData, flow_run_url: str | None = None) -> dict[str, str]:
    """Links shown in the report, relative to its folder so the folder can be moved or served."""
    folder = Path(out_dir).resolve() / run_id
    links: dict[str, str] = {}
    docs = next((c["data_docs"] for c in data.checks if c.get("data_docs")), None)
    if docs and Path(docs).exists():
        links["Data Docs"] = os.path.relpath(Path(docs).resolve(), folder)
    for name, title in (
        ("train.parquet", "training set (Parquet)"),
        ("train.jsonl", "training set (JSONL)"),
        ("trajectories.parquet", "every trajectory (Parquet)"),
        ("README.md", "dataset card"),
    ):
        if (folder / name).exists():
            links[title] = name
    if flow_run_url:
        links["Prefect flow run"] = flow_run_url
    return links


def build_report(query: Query, run_id: str, out_dir: Path, flow_run_url: str | None = None) -> Path:
    """Write <out>/<run_id>/report.html from the store and return its path.

    Written to a temporary file beside it and renamed over it: a crash leaves the old report or the new, whole.
    """
    from reer.tasks.export import write_atomically

    data = report_data(query, run_id)
    data.links = run_links(out_dir, run_id, data, flow_run_url)
    path = report_path(out_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, render(data))
    return path


@task(cache_policy=NO_CACHE)
def write_report(store, run_id: str, out_dir: Path, flow_run_url: str | None = None) -> str:
    """The run's HTML report, written by the flow that ran it."""
    return str(build_report(store.query, run_id, out_dir, flow_run_url))
