"""The dataset card (README.md) written beside an export: counts, pass rates, scores, provenance.

Every number comes from SQL over the store (sql/queries/card_*.sql and the check_pass_rates
view), so the card says exactly what a query says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

from reer.sql import read_sql
from reer.store import Store

if TYPE_CHECKING:
    from reer.tasks.export import Written


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A pipe table; floats to 4 places, None as '-'."""

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _front_matter(languages: list[str]) -> list[str]:
    """The YAML header the Hugging Face hub reads: the train split and its languages."""
    return [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: train.parquet",
        f"language: [{', '.join(languages) or 'en'}]",
        "task_categories: [text-generation]",
        "tags: [reer, writing, reasoning, synthetic]",
        "---",
        "",
    ]


PROVENANCE_FIELDS = (
    "run_id",
    "flow_run_id",
    "started_at",
    "generator_model",
    "scorer_model",
    "backend",
    "dtype",
    "prompt_version",
    "code_version",
    "config_hash",
)


def _intro(run_id: str, written: Written) -> list[str]:
    lines = [
        f"# reer trajectories, run `{run_id}`",
        "",
        f"Thinking trajectories synthesized by REverse-Engineered Reasoning (REER): for each writing "
        f"request and reference answer, a greedy search for the thinking that makes the answer most "
        f"predictable to a scorer model. **{written.train_rows} of {written.full_rows} completed "
        f"trajectories passed every quality check** and make up the training files; the full table "
        f"keeps all of them with their verdicts.",
        "",
    ]
    if written.train_rows == 0:
        lines += [
            "> No trajectory passed every check: train.parquet and train.jsonl hold no rows (and `datasets` "
            "refuses to load an empty split). trajectories.parquet and the checks below say why.",
            "",
        ]
    return lines


def _files(written: Written) -> list[str]:
    files = [
        [
            "train.parquet",
            written.train_rows,
            "passing trajectories: `prompt` (chat list), `solution` "
            "(`<think>` thinking `</think>` answer), category, source, scores, ids (DeepWriting-20K layout)",
        ],
        [
            "train.jsonl",
            written.train_rows,
            "the same rows as chat `messages` (user, assistant), for TRL's SFT trainer",
        ],
        ["trajectories.parquet", written.full_rows, "every completed trajectory, with `passed` and `failed_reasons`"],
    ]
    if (written.folder / "data_docs" / "index.html").exists():  # validated into another folder: no link
        files.append(["data_docs/index.html", "-", "great-expectations Data Docs of the validation"])
    return ["## Files", ""] + markdown_table(["file", "rows", "holds"], files) + [""]


def _checks(store: Store, run_id: str) -> list[str]:
    """The latest validation's pass rate per check, in the order the checks are defined."""
    from reer.settings import QualityConfig
    from reer.tasks.quality import check_specs

    rates = store.query(read_sql("queries/card_checks"), run_id=run_id)
    validation = store.query("SELECT validation_id FROM latest_validations WHERE run_id = $run_id", run_id=run_id)[
        "validation_id"
    ][0]
    specs = check_specs(QualityConfig())  # for each check's direction and its place in the list
    bounds = {s.name: (">=" if s.bound == "min" else "<=") for s in specs}
    order = [s.name for s in specs]
    rates = rates.sort(
        pl.col("check_name").map_elements(lambda n: order.index(n) if n in order else len(order), return_dtype=pl.Int64)
    )
    rows = [
        [
            r["suite"],
            r["check_name"],
            f"{bounds.get(r['check_name'], '')} {_number(r['threshold'])}",
            r["checked"],
            r["passed"],
            r["pass_rate"],
        ]
        for r in rates.iter_rows(named=True)
    ]
    header = (
        f"Validation `{validation}`; each row counts the examples (input suite) or trajectories (output suite) checked."
    )
    table = markdown_table(["suite", "check", "bound", "checked", "passed", "pass rate"], rows)
    return ["## Checks", "", header, ""] + table + [""]


def _controls(store: Store, run_id: str) -> list[str]:
    """z* against no thinking and against another item's thinking: mean float32 gain and share of items it beats."""
    from reer.tasks.controls import control_figures, run_margin

    figures = {f["control"]: f for f in control_figures(store.query, run_id)}
    margin = run_margin(store.query, run_id)
    rows = []
    for control, figure, against in (
        ("no_thinking", "thinking gain", "no thinking (an empty think block)"),
        ("other_thinking", "specificity", "another item's final thinking (each item reads the next one's)"),
    ):
        f = figures[control]
        rows.append(
            [figure, against, f["n"], f["mean_gain"], f"{f['beats']} / {f['n']}", f["share"] if f["n"] else None]
        )
    header = (
        "The answer scored by the scorer's model in float32 after each control instead of the searched thinking z*, "
        "over the run's completed trajectories. Gain = control score minus z*'s score: positive means z* explains "
        f"the answer better; an item counts as beaten by z* when its gain is at least {margin:g} (the search's "
        "accept_margin, float32's noise). Near zero or negative: this scorer cannot tell this thinking from none, "
        "or from any thinking."
    )
    table = markdown_table(["figure", "z* against", "items", "mean gain", "z* better", "share"], rows)
    return ["## Controls", "", header, ""] + table + [""]


def _provenance(store: Store, run_id: str) -> list[str]:
    run = store.query("SELECT * FROM runs WHERE run_id = $run_id", run_id=run_id).to_dicts()[0]
    sources = store.query(read_sql("queries/card_sources"), run_id=run_id)
    return (
        ["## Provenance", ""]
        + markdown_table(["field", "value"], [[k, run.get(k)] for k in PROVENANCE_FIELDS])
        + ["", "Sources (the answers keep their sources' licences):", ""]
        + markdown_table(["source", "examples", "completed", "passed"], sources.rows())
        + [""]
    )


def dataset_card(store: Store, run_id: str, written: Written) -> str:
    """The card's markdown for one run's export."""
    categories = store.query(read_sql("queries/card_categories"), run_id=run_id)
    scores = store.query(read_sql("queries/card_scores"), run_id=run_id)
    languages = store.query(
        "SELECT DISTINCT language FROM passed_trajectories WHERE run_id = $run_id AND language IS NOT NULL ORDER BY 1",
        run_id=run_id,
    )["language"].to_list()
    lines = _front_matter(languages) + _intro(run_id, written) + _files(written)
    lines += ["## Trajectories per category", ""]
    lines += markdown_table(["category", "completed", "passed"], categories.rows()) + [""]
    lines += _checks(store, run_id)
    lines += ["## Scores", "", "Score = -mean(clip(log p, -2, 0)) over the scored answer tokens; lower is better.", ""]
    lines += markdown_table(["set", "figure", "n", "mean", "median", "min", "max"], scores.rows()) + [""]
    lines += _controls(store, run_id)
    lines += _provenance(store, run_id)
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
