"""Everything the commands print on stdout: the run summary, query results, an item's revisions
and score chart, the sources table and the checks table.

Cells and lines holding stored data are rich `Text`, never markup: a query or a file name with
brackets in it prints as it is. They pass through `clean` first: a stored escape sequence never
reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reer.console import clean

if TYPE_CHECKING:
    import polars as pl

    from reer.tasks.summary import RunSummary

SHORT_CELL = 40  # a column whose cells are all this short (ids, numbers, dates, names) never folds
LONG_MIN = 20  # a long text column is folded down to this width at the least
SOURCE_STATUSES = ("loaded", "duplicate", "known", "over_limit", "rejected")


def data(value: Any) -> Text:
    """A cell or line of stored data: cleaned, and never markup."""
    return Text(clean(dash(value)))


def out() -> Console:
    """The console for results on stdout (made per use: the width is the terminal's, or COLUMNS, of now)."""
    return Console(highlight=False)


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def pair(a: float | None, b: float | None) -> str:
    return f"{num(a)} -> {num(b)}"


def dash(value: Any) -> str:
    return "-" if value is None else str(value)


def print_summary(summary: RunSummary) -> None:
    """The run's figures as a two-column table, then its rejects per reason and its failing checks."""
    table = Table(title=f"reer run {summary.run_id}", show_header=False, title_justify="left")
    table.add_column("figure", no_wrap=True)
    table.add_column("value", overflow="fold")  # paths whole, folded at any width: a user copies them
    rows = [
        ("items searched", summary.items),
        ("already done (skipped)", summary.skipped_done),
        ("resumed mid-search", summary.resumed or 0),
        ("completed", summary.completed),
        ("rejected in search", summary.rejected_in_search),
        ("rejected inputs", summary.rejected_inputs),
        ("mean score, initial -> final", pair(summary.mean_initial_score, summary.mean_final_score)),
        ("mean score drop", num(summary.mean_score_drop)),
        ("accepted edits / candidates", f"{summary.accepted_edits or 0} / {summary.candidates}"),
        ("unparsable rewrites", summary.unparsable),
        ("rewrites repeating their segment", summary.unchanged),
        ("rewrites too long to score", summary.context_overflow),
        ("wall time", f"{summary.wall_seconds} s"),
        ("items per hour", summary.items_per_hour),
        ("generated tokens/s", summary.generated_tokens_per_second),
        ("scored tokens/s", summary.scored_tokens_per_second),
        ("database", summary.db),
        ("passed every check", f"{dash(summary.passed)} of {summary.completed}"),
        ("exported", summary.exported.get("parquet", "")),
        ("data docs", summary.data_docs or "-"),
        ("report", summary.report or "-"),
    ]
    for name, value in rows:
        table.add_row(name, data(value))
    console = out()
    console.print(table)
    for r in summary.rejects_by_reason:
        console.print(data(f"  rejected at {r['stage']}: {r['reason']} x{r['n']}"))
    for name, rate in summary.pass_rates.items():
        if rate < 1:
            console.print(data(f"  check {name}: {100 * rate:.1f}% pass"))


def cell(value: Any) -> str:
    """A query result's value as a table cell: floats to 4 places, NULL empty."""
    return "" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def print_rows(names: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table of text cells where short columns never fold; only long text columns fold.

    When even the long columns at LONG_MIN leave too little room, the table is printed wider than
    the terminal rather than folding an id or a number.
    """
    names = [clean(name) for name in names]
    rows = [[clean(value) for value in row] for row in rows]
    table = Table()
    needed = 3 * len(names) + 1  # borders and padding
    for index, name in enumerate(names):
        lines = [line for row in rows for line in (row[index].splitlines() or [""])]
        longest = max([cell_len(name), *map(cell_len, lines)])
        short = len(lines) == len(rows) and all(cell_len(line) <= SHORT_CELL for line in lines)
        table.add_column(Text(name), no_wrap=short, overflow="ellipsis" if short else "fold")
        needed += longest if short else min(longest, LONG_MIN)
    for row in rows:
        table.add_row(*map(Text, row))
    console = out()
    if needed > console.width:
        console = Console(highlight=False, width=needed)
    console.print(table)


def print_frame(frame: pl.DataFrame) -> None:
    """A query's result as a table, and its row count."""
    print_rows(frame.columns, [[cell(v) for v in row] for row in frame.iter_rows()])
    out().print(f"{frame.height} row{'s' if frame.height != 1 else ''}")


def print_revisions(revisions: pl.DataFrame) -> None:
    """One trajectory's revisions (rows of queries/item_revisions): who, its steps, its score chart."""
    first = revisions.row(0, named=True)
    runs = ", ".join(dict.fromkeys(revisions["run_id"].to_list()))
    console = out()
    console.print(
        Text.assemble(
            (clean(f"trajectory {first['trajectory_id']}"), "bold"),
            clean(f"  run {runs}  example {first['example_id']}"),
        )
    )
    console.print(Text.assemble(("query:", "dim"), " ", clean(first["query"][:300])))
    table = Table()
    for name in ("step", "segment", "cand", "status", "accepted", "score", "nll", "ppl", "text"):
        table.add_column(name, overflow="fold")
    for r in revisions.iter_rows(named=True):
        text = clean((r["segment_text"] if r["kind"] == "candidate" else r["thinking"]) or "")
        table.add_row(
            str(r["step"]),
            dash(r["segment_index"]),
            dash(r["candidate_index"]),
            data(r["status"]),
            "yes" if r["accepted"] else "",
            num(r["score"]),
            num(r["nll"]),
            num(r["ppl"]),
            Text(text[:160].replace("\n", " ") + ("..." if len(text) > 160 else "")),
        )
    console.print(table)
    console.print(score_chart(revisions))


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def print_controls(controls: list[dict]) -> None:
    """One trajectory's controls (rows of queries/item_controls): z* against no thinking and another item's."""
    console = out()
    if not controls:
        console.print("controls: none computed yet (reer eval RUN scores them)")
        return
    table = Table(title="controls (float32; gain > 0: z* explains the answer better)", title_justify="left")
    for name in ("run", "final", "no thinking", "thinking gain", "other thinking", "donor", "specificity", "note"):
        table.add_column(name, overflow="fold")
    for r in controls:
        table.add_row(
            data(r["run_id"]),
            num(r["final_score"]),
            num(r["no_thinking_score"]),
            signed(r["thinking_gain"]),
            num(r["other_thinking_score"]),
            data((r["donor_trajectory_id"] or "")[:12] or None),
            signed(r["specificity"]),
            data(
                r["notes"] or ("no other completed trajectory in the run" if r["donor_trajectory_id"] is None else "")
            ),
        )
    console.print(table)


def score_chart(revisions: pl.DataFrame) -> str:
    """Best score after each step, drawn as horizontal bars."""
    best: dict[int, float] = {}
    current = None
    for r in revisions.sort("step").iter_rows(named=True):
        if r["accepted"] and r["score"] is not None:
            current = r["score"] if current is None else min(current, r["score"])
        if current is not None:
            best[r["step"]] = current
    if not best:
        return "no scored revision"
    top = max(best.values()) or 1.0
    lines = ["best score after each step:"]
    for step, score in sorted(best.items()):
        lines.append(f"  step {step:>2} {'█' * max(1, round(40 * score / top)):<40} {score:.4f}")
    return "\n".join(lines)


def print_sources(run_id: str, rows: list[dict]) -> None:
    """One table row per file with its records per status, then its rejects per reason."""
    table = Table(
        title=data(f"sources read by run {run_id}"),
        title_justify="left",
        caption_justify="left",
        caption="dupes: merged into the same pair read earlier in this run; known: stored by an earlier run",
    )
    table.add_column("source", overflow="fold", ratio=1)
    for name in ("read", "loaded", "dupes", "known", "over limit", "rejected"):
        table.add_column(name, justify="right", no_wrap=True)
    files = list(dict.fromkeys(r["source"] for r in rows))
    names = [Path(f).name for f in files]
    # File names keep the table narrow; full paths only where two files share a name.
    labels = {f: (n if names.count(n) == 1 else f) for f, n in zip(files, names)}
    for source in files:
        counts = {s: sum(r["n"] for r in rows if r["source"] == source and r["status"] == s) for s in SOURCE_STATUSES}
        table.add_row(data(labels[source]), str(sum(counts.values())), *[str(counts[s]) for s in SOURCE_STATUSES])
    console = out()
    console.print(table)
    for source in files:
        for r in rows:
            if r["source"] == source and r["status"] == "rejected":
                console.print(data(f"  {labels[source]}: rejected {r['reason']} x{r['n']}"))


def print_checks(rates: pl.DataFrame, specs: Sequence[Any]) -> None:
    """Pass rate per check, in the order the checks are defined."""
    table = Table(title="checks", title_justify="left")
    for name in ("suite", "check", "bound", "passed", "pass rate"):
        table.add_column(name)
    order = {s.name: i for i, s in enumerate(specs)}
    signs = {s.name: ">=" if s.bound == "min" else "<=" for s in specs}
    for r in sorted(rates.iter_rows(named=True), key=lambda r: order.get(r["check_name"], len(order))):
        table.add_row(
            data(r["suite"]),
            data(r["check_name"]),
            f"{signs.get(r['check_name'], '')} {r['threshold']:g}",
            f"{r['passed']} / {r['checked']}",
            f"{100 * r['pass_rate']:.1f}%",
        )
    out().print(table)
