"""Quality checks on a run's inputs (examples) and outputs (trajectories).

Each metric is a pure function of the stored rows. The metrics of a run form two tables, one
row per example and one per trajectory; great-expectations validates those tables against
the thresholds (tasks/expectations.py), and every (row, check) verdict becomes a row of
`checks`, failures with their reasons. Nothing is deleted: the `passed_trajectories` view
selects the rows that passed everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.ids import time_ordered_id
from reer.kill_points import kill_point
from reer.settings import QualityConfig, SearchConfig
from reer.sql import read_sql
from reer.store import Store
from reer.tasks.dedup import find_duplicates, text_units
from reer.tasks.prompts import PROMPTS, detect_language

_SENTENCE_END = tuple(".!?…。！？」』”\"')")
_CLOSED = ("stop", "eos")  # finish reasons of a generation that ended its thinking itself

INPUTS, OUTPUTS = "examples", "trajectories"  # suite names; each validates one table


# -- metrics: pure functions of text and numbers ----------------------------------------------


def ngram_repetition(text: str, n: int) -> float:
    """Share of the text's n-grams (of words; CJK characters) that repeat one seen before it."""
    units = text_units(text)
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def longest_shared_span(text: str, other: str) -> tuple[int, str]:
    """The longest run of consecutive units found in both texts, as (length, the run).

    If a run of k units is shared, so is every shorter run inside it, so the longest length
    can be found by binary search over k with a set of the other text's k-grams.
    """
    a, b = text_units(text), text_units(other)

    def shared(k: int) -> str | None:
        if k == 0:
            return ""
        grams = {tuple(b[i : i + k]) for i in range(len(b) - k + 1)}
        return next((" ".join(a[i : i + k]) for i in range(len(a) - k + 1) if tuple(a[i : i + k]) in grams), None)

    lo, hi, found = 0, min(len(a), len(b)), ""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        span = shared(mid)
        if span is None:
            hi = mid - 1
        else:
            lo, found = mid, span
    return lo, found


def ends_sentence(text: str) -> bool:
    """The last segment stops at a sentence end, not mid-thought."""
    return text.rstrip().endswith(_SENTENCE_END)


def closed_thinking(finish_reason: str | None) -> bool:
    """The initial generation ended its thinking itself, not at the token limit."""
    return finish_reason in _CLOSED


def cue_markers(language: str) -> tuple[str, ...]:
    """The words that open each reflection cue the prompts suggest (tasks/prompts.py): 'Hmm', 'Wait'..."""
    markers = []
    for cue in PROMPTS[language].cues:
        bare = cue.strip("\"'“”‘’").rstrip(".…").strip()
        markers.append(re.split(r"[,，]", bare)[0].strip())
    return tuple(markers)


def cue_counts(text: str, language: str) -> dict[str, int]:
    """How often each reflection cue occurs: as a word in English, at the start of a clause in Chinese."""
    counts = {}
    for marker in cue_markers(language):
        if language == "zh":  # no word boundaries: count a cue only where a clause starts
            pattern = r"(?:^|(?<=[\s。！？，；：…“”「」]))" + re.escape(marker)
            counts[marker] = len(re.findall(pattern, text))
        else:
            counts[marker] = len(re.findall(rf"\b{re.escape(marker)}\b", text, flags=re.IGNORECASE))
    return counts


def relative_improvement(initial: float, final: float, steps: int) -> float | None:
    """(initial - final) / initial; None when no search step ran (z(0) was already under tau)."""
    if steps == 0 or not initial:
        return None
    return (initial - final) / initial


# -- the checks: what each one bounds ---------------------------------------------------------


@dataclass(frozen=True)
class CheckSpec:
    """One check: a metric column of a suite's table, bounded from below or from above."""

    suite: str
    name: str
    bound: Literal["min", "max"]
    threshold: float
    description: str

    def holds(self, value: float | None) -> bool:
        """The bound in plain Python (GX decides in the pipeline; this mirrors it for tests)."""
        if value is None:
            return True
        return value >= self.threshold if self.bound == "min" else value <= self.threshold


def check_specs(cfg: QualityConfig, accept_margin: float | None = None) -> list[CheckSpec]:
    """Every check with its threshold from the settings; the controls' bound is the search's accept_margin
    (the run's own where validation knows it, else the default)."""
    margin = SearchConfig().accept_margin if accept_margin is None else accept_margin
    return [
        CheckSpec(
            INPUTS,
            "query_duplicate",
            "max",
            cfg.max_duplicate_similarity,
            "similarity of the query to an earlier example's",
        ),
        CheckSpec(
            INPUTS,
            "answer_duplicate",
            "max",
            cfg.max_duplicate_similarity,
            "similarity of the answer to an earlier example's",
        ),
        CheckSpec(
            INPUTS,
            "answer_repetition",
            "max",
            cfg.max_ngram_repetition,
            f"share of repeated {cfg.ngram}-grams in the answer",
        ),
        CheckSpec(
            OUTPUTS, "thinking_closed", "min", 1, "the initial generation ended its thinking (finish stop or eos)"
        ),
        CheckSpec(OUTPUTS, "ends_sentence", "min", 1, "the last segment ends a sentence"),
        CheckSpec(
            OUTPUTS,
            "ngram_repetition",
            "max",
            cfg.max_ngram_repetition,
            f"share of repeated {cfg.ngram}-grams in the thinking",
        ),
        CheckSpec(
            OUTPUTS,
            "thinking_duplicate",
            "max",
            cfg.max_duplicate_similarity,
            "similarity of the thinking to an earlier trajectory's",
        ),
        CheckSpec(OUTPUTS, "min_thinking_tokens", "min", cfg.min_thinking_tokens, "tokens in the final thinking"),
        CheckSpec(OUTPUTS, "max_thinking_tokens", "max", cfg.max_thinking_tokens, "tokens in the final thinking"),
        CheckSpec(
            OUTPUTS, "answer_copy", "max", cfg.max_copied_span, "longest run of units shared by thinking and answer"
        ),
        CheckSpec(OUTPUTS, "score_not_worse", "max", 0.0, "final minus initial score"),
        CheckSpec(
            OUTPUTS, "relative_improvement", "min", cfg.min_relative_improvement, "(initial - final) / initial score"
        ),
        CheckSpec(OUTPUTS, "reflection_cues", "min", cfg.min_reflection_cues, "reflection cues in the thinking"),
        CheckSpec(OUTPUTS, "cue_repetition", "max", cfg.max_same_cue, "uses of the most used reflection cue"),
        CheckSpec(OUTPUTS, "language_match", "min", 1, "the thinking is in the query's language"),
        CheckSpec(
            OUTPUTS,
            "beats_no_thinking",
            "min",
            margin,
            "score with no thinking minus score with the final thinking (float32)",
        ),
        CheckSpec(
            OUTPUTS,
            "beats_other_thinking",
            "min",
            margin,
            "score with another item's final thinking minus score with this one's (float32)",
        ),
    ]


# -- metric tables: one row per example / trajectory, a column per check ----------------------


def _schema(suite: str, cfg: QualityConfig, key: str) -> dict[str, pl.DataType]:
    """A suite's metric table: its ids, a Float64 column per check, a text column of details per check."""
    names = [s.name for s in check_specs(cfg) if s.suite == suite]  # names only: the margin does not matter
    ids = {"example_id": pl.Utf8} if key == "example_id" else {"trajectory_id": pl.Utf8, "example_id": pl.Utf8}
    return {**ids, **{n: pl.Float64 for n in names}, **{f"{n}__detail": pl.Utf8 for n in names}}


def duplicate_metrics(texts: list[str], ids: list[str], name: str, what: str, cfg: QualityConfig) -> list[dict]:
    """Per text: its similarity to the most similar earlier text, and which one that is."""
    rows = []
    for m in find_duplicates(texts, cfg.shingle):
        if m.earlier is None:
            detail = "no similar earlier text"
        elif m.exact:
            detail = f"exact duplicate of {what} {ids[m.earlier]}"
        else:
            detail = f"closest earlier: {what} {ids[m.earlier]} (Jaccard {m.similarity:.2f})"
        rows.append({name: m.similarity, f"{name}__detail": detail})
    return rows


def example_metrics(examples: pl.DataFrame, cfg: QualityConfig) -> pl.DataFrame:
    """Input metrics from (example_id, query, answer) rows, in the order that decides 'earlier'."""
    ids = examples["example_id"].to_list()
    queries = duplicate_metrics(examples["query"].to_list(), ids, "query_duplicate", "example", cfg)
    answers = duplicate_metrics(examples["answer"].to_list(), ids, "answer_duplicate", "example", cfg)
    rows = [
        {"example_id": i, **q, **a, "answer_repetition": ngram_repetition(text, cfg.ngram)}
        for i, q, a, text in zip(ids, queries, answers, examples["answer"].to_list())
    ]
    return pl.DataFrame(rows, schema=_schema(INPUTS, cfg, "example_id"))


def trajectory_row_metrics(row: dict, cfg: QualityConfig) -> dict:
    """Every per-trajectory metric of one row (thinking, answer, query, scores, finish reason)."""
    thinking, query = row["thinking"], row["query"]
    query_language, thinking_language = detect_language(query), detect_language(thinking)
    cues = cue_counts(thinking, thinking_language)  # cues of the language it is written in
    top_cue = max(cues, key=cues.get)
    span, copied = longest_shared_span(thinking, row["answer"])
    initial, final = row["initial_score"], row["final_score"]
    scored = initial is not None and final is not None  # a completed search always has both; old rows may not
    improvement = relative_improvement(initial, final, row["steps"] or 0) if scored else None
    tokens = float(row["thinking_tokens"] or 0)  # unknown length fails the minimum rather than passing
    gain, specificity = row.get("thinking_gain"), row.get("specificity")
    final_control = row.get("control_final_score")
    return {
        "thinking_closed": float(closed_thinking(row["initial_finish_reason"])),
        "thinking_closed__detail": f"initial finish reason: {row['initial_finish_reason']}",
        "ends_sentence": float(ends_sentence(thinking)),
        "ends_sentence__detail": f"ends with: {thinking.rstrip()[-40:]!r}",
        "ngram_repetition": ngram_repetition(thinking, cfg.ngram),
        "min_thinking_tokens": tokens,
        "max_thinking_tokens": tokens,
        "answer_copy": float(span),
        "answer_copy__detail": f"longest shared run: {copied[:120]!r}" if span else "nothing shared",
        "score_not_worse": final - initial if scored else None,
        "score_not_worse__detail": f"initial {initial:.4f}, final {final:.4f}" if scored else "no scores stored",
        "relative_improvement": improvement,
        "relative_improvement__detail": "no search step ran: not applicable" if improvement is None else "",
        "reflection_cues": float(sum(cues.values())),
        "reflection_cues__detail": ", ".join(f"{k} x{v}" for k, v in cues.items() if v) or "no cue",
        "cue_repetition": float(cues[top_cue]),
        "cue_repetition__detail": f"most used: {top_cue!r} x{cues[top_cue]}",
        "language_match": float(query_language == thinking_language),
        "language_match__detail": f"query {query_language}, thinking {thinking_language}",
        "beats_no_thinking": gain,
        "beats_no_thinking__detail": (
            "no control stored: not applicable (reer eval RUN computes it)"
            if gain is None
            else f"no thinking {row['no_thinking_score']:.4f}, final thinking {final_control:.4f}"
        ),
        "beats_other_thinking": specificity,
        "beats_other_thinking__detail": (
            "no control stored: not applicable (one completed trajectory, or reer eval RUN not run)"
            if specificity is None
            else f"thinking of {row['donor_trajectory_id']} {row['other_thinking_score']:.4f}, "
            f"this one's {final_control:.4f}"
        ),
    }


def trajectory_metrics(trajectories: pl.DataFrame, cfg: QualityConfig) -> pl.DataFrame:
    """Output metrics, one row per completed trajectory, in the order that decides 'earlier'."""
    ids = trajectories["trajectory_id"].to_list()
    dupes = duplicate_metrics(trajectories["thinking"].to_list(), ids, "thinking_duplicate", "trajectory", cfg)
    rows = [
        {"trajectory_id": r["trajectory_id"], "example_id": r["example_id"], **trajectory_row_metrics(r, cfg), **d}
        for r, d in zip(trajectories.iter_rows(named=True), dupes)
    ]
    return pl.DataFrame(rows, schema=_schema(OUTPUTS, cfg, "trajectory_id"))


# -- verdicts: GX decides; each (row, check) becomes a `checks` row -----------------------------


def check_rows(
    metrics: pl.DataFrame, specs: list[CheckSpec], failing: dict[str, set[str]], key: str, context: dict
) -> list[dict]:
    """A `checks` row per (row, check): passed as GX decided, the observed value, and why."""
    rows = []
    for record in metrics.iter_rows(named=True):
        for spec in specs:
            observed = record[spec.name]
            passed = record[key] not in failing[spec.name]
            rows.append(
                {
                    **context,
                    "trajectory_id": record.get("trajectory_id"),  # None for an input check: it names its example
                    "example_id": record.get("example_id"),
                    "suite": spec.suite,
                    "check_name": spec.name,
                    "passed": passed,
                    "observed": observed,
                    "threshold": float(spec.threshold),
                    "detail": _detail(spec, observed, passed, record.get(f"{spec.name}__detail") or ""),
                }
            )
    return rows


def _detail(spec: CheckSpec, observed: float | None, passed: bool, extra: str) -> str:
    """One line: what was measured against which bound, and what was seen."""
    sign = ">=" if spec.bound == "min" else "<="
    head = f"{spec.description}: {'-' if observed is None else _fmt(observed)} (want {sign} {_fmt(spec.threshold)})"
    verdict = "" if passed else "FAILED "
    return f"{verdict}{head}" + (f"; {extra}" if extra else "")


def _fmt(value: float) -> str:
    """Whole numbers without decimals, others to 4 places."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}"


# -- the run: load, measure, validate, store ------------------------------------------------------


@dataclass
class Validation:
    """What one validation of a run produced, for the run summary."""

    validation_id: str
    run_id: str
    trajectories: int
    passed: int
    examples: int
    pass_rates: dict[str, float]  # "suite.check" -> share of rows that passed
    data_docs: str | None

    def summary(self) -> dict:
        """The figures the run summary and the CLI print."""
        return {
            "validation_id": self.validation_id,
            "checked": self.trajectories,
            "passed": self.passed,
            "failed": self.trajectories - self.passed,
            "examples_checked": self.examples,
            "pass_rates": self.pass_rates,
            "data_docs": self.data_docs,
        }


def validate(store: Store, run_id: str, cfg: QualityConfig, docs_dir: Path | None) -> Validation:
    """Measure a run's examples and trajectories, let GX judge them, store every verdict."""
    from reer.tasks.controls import run_margin
    from reer.tasks.expectations import validate_tables

    examples = store.query(read_sql("queries/quality_examples"), run_id=run_id)
    trajectories = store.query(read_sql("queries/quality_trajectories"), run_id=run_id)
    margin = run_margin(store.query, run_id)  # the margin the run searched with: its float32 noise
    specs = check_specs(cfg, margin)
    tables = {
        INPUTS: (example_metrics(examples, cfg), "example_id"),
        OUTPUTS: (trajectory_metrics(trajectories, cfg), "trajectory_id"),
    }
    validation_id = time_ordered_id()
    outcome = validate_tables(tables, specs, docs_dir, run_name=validation_id)  # docs are per run already
    context = {"run_id": run_id, "validation_id": validation_id}
    rows = []
    for suite, (metrics, key) in tables.items():
        rows += check_rows(metrics, [s for s in specs if s.suite == suite], outcome.failing, key, context)
    record = {
        "validation_id": validation_id,
        "run_id": run_id,
        "config": cfg.model_dump(),
        "examples": examples.height,
        "trajectories": trajectories.height,
        "data_docs": outcome.data_docs,
    }

    def store_verdicts(con) -> None:  # the verdicts and the record that makes them current land together
        store.append(con, "checks", rows)
        kill_point("validating")  # a crash here must leave neither
        store.append(con, "validations", [record])

    store.atomically(store_verdicts)
    passed = store.query(
        "SELECT count(*) FILTER (WHERE passed) AS passed FROM trajectory_verdicts WHERE run_id = $run_id", run_id=run_id
    )["passed"][0]
    return Validation(
        validation_id,
        run_id,
        trajectories.height,
        int(passed or 0),
        examples.height,
        pass_rates(rows),
        outcome.data_docs,
    )


def pass_rates(rows: list[dict]) -> dict[str, float]:
    """Share of rows that passed, per suite and check, in check order."""
    totals: dict[str, list[int]] = {}
    for r in rows:
        seen = totals.setdefault(f"{r['suite']}.{r['check_name']}", [0, 0])
        seen[0] += r["passed"]
        seen[1] += 1
    return {name: round(p / n, 4) for name, (p, n) in totals.items()}


@task(cache_policy=NO_CACHE)
def validate_run(store: Store, run_id: str, cfg: QualityConfig, out_dir: Path) -> dict:
    """Run the quality suites on a run; Data Docs go to <out>/<run_id>/data_docs/."""
    return validate(store, run_id, cfg, Path(out_dir) / run_id / "data_docs").summary()
