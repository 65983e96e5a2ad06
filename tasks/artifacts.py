"""A run's Prefect artifacts: per-item results as a table, the summary as markdown, a link to the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from reer.sql import read_sql
from reer.tasks.summary import RunSummary

ITEMS_KEY, SUMMARY_KEY, REPORT_KEY = "reer-run-items", "reer-run-summary", "reer-run-report"
ITEM_COLUMNS = (
    "trajectory_id",
    "status",
    "reason",
    "initial_score",
    "final_score",
    "relative_improvement",
    "steps",
    "accepted_edits",
    "passed",
    "query",
)


def items_table(query: Callable[..., pl.DataFrame], run_id: str) -> list[dict[str, Any]]:
    """One row per item the run covered: how it ended, initial and final score, steps, accepted edits."""
    rows = query(read_sql("queries/report_items"), run_id=run_id).to_dicts()
    return [{k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in ITEM_COLUMNS} for r in rows]


def file_link(path: str | Path | None) -> str:
    """A markdown link to a local file (absolute file:// URL) with its path shown, or '-'."""
    if not path:
        return "-"
    absolute = Path(path).resolve()
    return f"[{absolute.name}]({absolute.as_uri()}) `{absolute}`"


def summary_markdown(summary: RunSummary) -> str:
    """A run's summary as markdown: figures, rejects by reason, check pass rates, throughput and links."""

    def fmt(value):
        return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    keys = [
        "items",
        "completed",
        "rejected_in_search",
        "rejected_inputs",
        "mean_initial_score",
        "mean_final_score",
        "mean_score_drop",
        "accepted_edits",
        "candidates",
        "revisions",
        "unparsable",
    ]
    lines = [f"# reer run `{summary.run_id}`", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {fmt(getattr(summary, k))} |" for k in keys]
    lines += ["", "## Throughput", "", "| figure | value |", "|---|---|"]
    lines += [
        f"| {name} | {fmt(getattr(summary, k))} |"
        for name, k in (
            ("wall time (s)", "wall_seconds"),
            ("items per hour", "items_per_hour"),
            ("generated tokens/s", "generated_tokens_per_second"),
            ("scored tokens/s", "scored_tokens_per_second"),
        )
    ]
    rejects = summary.rejects_by_reason
    lines += ["", "## Rejects by reason", ""]
    if rejects:
        lines += ["| stage | reason | count |", "|---|---|---|"]
        lines += [f"| {r['stage']} | {r['reason']} | {r['n']} |" for r in rejects]
    else:
        lines += ["Nothing was rejected."]
    lines += [
        "",
        "## Validation",
        "",
        f"Passed every check: {fmt(summary.passed)} of {fmt(summary.completed)}",
    ]
    if summary.pass_rates:
        lines += ["", "| check | pass rate |", "|---|---|"]
        lines += [f"| {name} | {rate:.1%} |" for name, rate in summary.pass_rates.items()]
    exported = summary.exported
    lines += [
        "",
        "## Links",
        "",
        f"- Report: {file_link(summary.report)}",
        f"- Data Docs: {file_link(summary.data_docs)}",
        f"- Training set: {file_link(exported.get('parquet'))}",
        f"- Dataset card: {file_link(exported.get('card'))}",
    ]
    if summary.flow_run_url:
        lines.append(f"- Flow run: [{summary.flow_run_url}]({summary.flow_run_url})")
    return "\n".join(lines)


def create_run_artifacts(query: Callable[..., pl.DataFrame], summary: RunSummary) -> None:
    """The per-item table, the markdown summary and a link to the HTML report, on the current flow run."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    run_id = summary.run_id
    rows = items_table(query, run_id)
    if rows:  # Prefect's table artifact needs at least one row to know its columns
        create_table_artifact(table=rows, key=ITEMS_KEY, description=f"reer run {run_id}: per-item results")
    create_markdown_artifact(markdown=summary_markdown(summary), key=SUMMARY_KEY, description=f"reer run {run_id}")
    if summary.report:
        create_link_artifact(
            link=Path(summary.report).resolve().as_uri(),
            link_text=f"report of run {run_id}",
            key=REPORT_KEY,
            description=f"reer run {run_id}: HTML report",
        )
