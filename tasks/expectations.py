"""great-expectations glue: metric tables in, per-row verdicts and Data Docs out.

Each suite's metric table (one row per example or trajectory, one column per check) is
validated on GX's pandas path in an ephemeral context: one `ExpectColumnValuesToBeBetween`
per check, with the check's name in the expectation's meta. GX's COMPLETE result lists the
ids of the rows outside the bound; those rows fail that check. GX is imported inside the
functions because its import alone takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from reer.tasks.quality import CheckSpec

SITE = "reer"


class ValidationError(RuntimeError):
    """GX could not evaluate an expectation (a bug in a metric table, not bad data)."""


@dataclass
class Outcome:
    """The ids failing each check, and where the Data Docs index is (when built)."""

    failing: dict[str, set[str]]
    data_docs: str | None


def _context(docs_dir: Path | None):
    """An in-memory GX context, quiet, with one filesystem Data Docs site when asked for."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for name, site in list(context.list_data_docs_sites().items()):  # the default site: an empty temp folder
        context.delete_data_docs_site(name)
        _remove_if_empty(site.get("store_backend", {}).get("base_directory"))
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name=SITE,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
    return context


def _remove_if_empty(folder: str | None) -> None:
    """Tidy the temp folder GX made for the site we replaced; leave anything with content."""
    if folder and Path(folder).is_dir() and not any(Path(folder).iterdir()):
        Path(folder).rmdir()


def expectation(spec: CheckSpec):
    """The GX expectation of one check: its column within the bound; missing values are 'not applicable'."""
    import great_expectations.expectations as gxe

    bound = {"min_value": spec.threshold} if spec.bound == "min" else {"max_value": spec.threshold}
    return gxe.ExpectColumnValuesToBeBetween(
        column=spec.name, **bound, meta={"check": spec.name}, description=f"{spec.name}: {spec.description}"
    )


def _checkpoint(context, suite_name: str, key: str, specs: list[CheckSpec], docs: bool):
    """A checkpoint validating one dataframe against one suite, updating the Data Docs site."""
    import great_expectations as gx

    source = context.data_sources.add_or_update_pandas(f"reer-{suite_name}")
    batch = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("metrics")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for spec in specs:
        suite.add_expectation(expectation(spec))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[SITE])] if docs else []
    return context.checkpoints.add(
        gx.Checkpoint(
            name=f"reer-{suite_name}",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [key]},
        )
    )


def raised_exception(info: dict | None) -> str | None:
    """The first line of the error GX met evaluating an expectation, or None.

    GX 1.x nests the error under each metric's id ({metric_id: {"raised_exception": ...}});
    older results keep it at the top level. Both are read: a missed error would pass every row.
    """
    entries = [info or {}] + [v for v in (info or {}).values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return ((entry.get("exception_message") or "").splitlines() or [""])[0]
    return None


def failing_ids(results, key: str) -> dict[str, set[str]]:
    """The ids of the rows each check failed, from a checkpoint's results."""
    failing: dict[str, set[str]] = {}
    for run in results.run_results.values():
        for result in run.results:
            name = result.expectation_config.meta["check"]
            message = raised_exception(result.exception_info)
            if message is not None:
                raise ValidationError(f"GX could not evaluate check {name}: {message}")
            failing[name] = {row[key] for row in result.result.get("unexpected_index_list") or []}
    return failing


def validate_tables(
    tables: dict[str, tuple[pl.DataFrame, str]], specs: list[CheckSpec], docs_dir: Path | None, run_name: str
) -> Outcome:
    """Validate each suite's metric table (keyed by its id column) and build the Data Docs."""
    from great_expectations.core.run_identifier import RunIdentifier

    docs_dir = Path(docs_dir).resolve() if docs_dir is not None else None  # GX wants an absolute folder
    context = _context(docs_dir)
    failing: dict[str, set[str]] = {s.name: set() for s in specs}
    for suite_name, (frame, key) in tables.items():
        mine = [s for s in specs if s.suite == suite_name]
        if frame.is_empty() or not mine:  # nothing to judge; GX would report an empty batch
            continue
        checkpoint = _checkpoint(context, suite_name, key, mine, docs_dir is not None)
        data = frame.select([key, *[s.name for s in mine]]).to_pandas()
        results = checkpoint.run(batch_parameters={"dataframe": data}, run_id=RunIdentifier(run_name=run_name))
        failing.update(failing_ids(results, key))
    index = Path(docs_dir) / "index.html" if docs_dir is not None else None
    return Outcome(failing, str(index) if index is not None and index.exists() else None)
