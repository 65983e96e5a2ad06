"""Quality checks: each metric on its own, then each check broken one at a time and judged by GX."""

from __future__ import annotations

import re
from collections import Counter

import polars as pl
import pytest

from reer.tasks.quality import (
    INPUTS,
    OUTPUTS,
    CheckSpec,
    QualityConfig,
    check_rows,
    check_specs,
    closed_thinking,
    cue_counts,
    cue_markers,
    ends_sentence,
    example_metrics,
    longest_shared_span,
    ngram_repetition,
    relative_improvement,
    trajectory_metrics,
    validate,
)
from tests.tasks.crafted import ANSWER_A, ANSWER_B, CLEAN, QUERY_A, THINKING_B, fill_store

CFG = QualityConfig()


# -- metrics -----------------------------------------------------------------------------------


def test_ngram_repetition_counts_repeats_of_earlier_ngrams():
    assert ngram_repetition("a b c d a b c d", 4) == pytest.approx(1 - 4 / 5)
    assert ngram_repetition("one two three four five", 4) == 0.0
    assert ngram_repetition("too short", 4) == 0.0
    assert ngram_repetition("Same, same. SAME same", 1) == pytest.approx(0.75)  # case and punctuation don't count


def test_ngram_repetition_reads_chinese_by_character():
    assert ngram_repetition("我想我想我想", 2) == pytest.approx(1 - 2 / 5)


def test_longest_shared_span_finds_the_longest_run():
    assert longest_shared_span("I might say the quick brown fox here", "The quick brown fox jumps") == (
        4,
        "the quick brown fox",
    )
    assert longest_shared_span("nothing alike", "entirely different") == (0, "")
    assert longest_shared_span("", "anything") == (0, "")


def test_ends_sentence_and_closed_thinking():
    assert ends_sentence("It ends here.") and ends_sentence("它结束了。") and ends_sentence('He said "go."  \n')
    assert not ends_sentence("and then the")
    assert closed_thinking("stop") and closed_thinking("eos")
    assert not closed_thinking("length") and not closed_thinking(None)


def test_cue_markers_follow_the_prompts():
    assert cue_markers("en") == ("Hmm", "Wait", "Let me think", "But then again", "Or perhaps")
    assert "让我想想" in cue_markers("zh")


def test_cue_counts_by_word_in_english_and_by_clause_in_chinese():
    counts = cue_counts("Hmm, maybe. hmm! Wait, no. Awaiting nothing. Or perhaps not.", "en")
    assert counts["Hmm"] == 2 and counts["Wait"] == 1 and counts["Or perhaps"] == 1
    zh = cue_counts("嗯，也许先写开头。等等，这样好像太快。我们或者你", "zh")
    assert zh["嗯"] == 1 and zh["等等"] == 1 and zh["或者"] == 0  # "或者" mid-clause is no cue


def test_relative_improvement_is_not_applicable_without_a_search_step():
    assert relative_improvement(0.8, 0.6, steps=2) == pytest.approx(0.25)
    assert relative_improvement(0.2, 0.2, steps=0) is None


def test_check_spec_bounds_are_inclusive_and_ignore_missing_values():
    low = CheckSpec(OUTPUTS, "x", "min", 1, "")
    high = CheckSpec(OUTPUTS, "y", "max", 0.2, "")
    assert low.holds(1) and not low.holds(0.99) and low.holds(None)
    assert high.holds(0.2) and not high.holds(0.21)


def test_every_check_has_a_metric_column():
    specs = check_specs(CFG)
    assert len({s.name for s in specs}) == len(specs)
    assert {s.suite for s in specs} == {INPUTS, OUTPUTS}


# -- one check broken at a time, judged by great-expectations ------------------------------------


def words(text: str) -> list[str]:
    """An independent tokenization for the expected values: lower-cased words."""
    return re.findall(r"[a-z0-9]+", text.lower())


def repeated_share(text: str, n: int) -> float:
    """Independent reference: repeated n-grams over all n-grams."""
    grams = list(zip(*[words(text)[i:] for i in range(n)]))
    return sum(c - 1 for c in Counter(grams).values()) / len(grams)


REPEATED = THINKING_B + "\n\n" + "The flour smells warm tonight. " * 6
COPIED = ANSWER_B.split()[:15]
CHINESE = "嗯，也许这个场景应该从凌晨三点的面包房开始写，让读者先闻到面粉的味道。\n\n等等，这样好像太慢了，我要更快地让纸条出现，然后停在他把纸条钉在烤炉上方的那一刻。"

OUTPUT_BREAKS = {
    "thinking_closed": ({"initial_finish_reason": "length"}, 0.0),
    "ends_sentence": ({"thinking": THINKING_B.rstrip(".") + " and then the"}, 0.0),
    "ngram_repetition": ({"thinking": REPEATED}, repeated_share(REPEATED, 4)),
    "thinking_duplicate": ({"thinking": CLEAN["a"]["thinking"]}, 1.0),
    "min_thinking_tokens": ({"thinking_tokens": 40}, 40.0),
    "max_thinking_tokens": ({"thinking_tokens": 5000}, 5000.0),
    "answer_copy": ({"thinking": THINKING_B + " I picture it opening: " + " ".join(COPIED) + " Then I stop."}, 15.0),
    "score_not_worse": ({"initial_score": 0.2, "final_score": 0.3, "steps": 0}, 0.1),
    # Fails alone when the search ran and the score fell, but by less than asked.
    "relative_improvement": ({"initial_score": 1.0, "final_score": 0.9995, "steps": 3}, 0.0005),
    "reflection_cues": ({"thinking": THINKING_B.replace("Let me think about", "I turn to")}, 0.0),
    "cue_repetition": ({"thinking": THINKING_B + " Hmm, the ovens. Hmm, the dawn. Hmm, the note."}, 3.0),
    "language_match": ({"thinking": CHINESE}, 0.0),
    # The controls (float32): z* worse than no thinking; better than another item's thinking only within noise.
    "beats_no_thinking": ({"thinking_gain": -0.05, "no_thinking_score": 0.55, "control_final_score": 0.6}, -0.05),
    "beats_other_thinking": (
        {"specificity": 5e-6, "other_thinking_score": 0.600005, "control_final_score": 0.6, "donor_trajectory_id": "a"},
        5e-6,
    ),
}


def judge(tables: dict, cfg: QualityConfig, tmp_path=None) -> list[dict]:
    """GX's verdicts as `checks` rows."""
    from reer.tasks.expectations import validate_tables

    specs = check_specs(cfg)
    outcome = validate_tables(tables, specs, tmp_path, run_name="test")
    rows = []
    for suite, (metrics, key) in tables.items():
        rows += check_rows(metrics, [s for s in specs if s.suite == suite], outcome.failing, key, {"run_id": "t"})
    return rows


def output_tables(rows: list[dict], cfg: QualityConfig) -> dict:
    return {OUTPUTS: (trajectory_metrics(pl.DataFrame(rows), cfg), "trajectory_id")}


def failures(rows: list[dict], key: str, value: str) -> dict[str, float | None]:
    return {r["check_name"]: r["observed"] for r in rows if r[key] == value and not r["passed"]}


def test_clean_trajectories_pass_every_check():
    verdicts = judge(output_tables([CLEAN["a"], CLEAN["b"]], CFG), CFG)
    assert len(verdicts) == 2 * len([s for s in check_specs(CFG) if s.suite == OUTPUTS])
    assert [r for r in verdicts if not r["passed"]] == []


@pytest.mark.parametrize("check", sorted(OUTPUT_BREAKS))
def test_breaking_one_output_check_fails_exactly_that_check(check):
    change, expected = OUTPUT_BREAKS[check]
    broken = {**CLEAN["b"], **change}
    verdicts = judge(output_tables([CLEAN["a"], broken], CFG), CFG)
    failed = failures(verdicts, "trajectory_id", "traj-b")
    assert list(failed) == [check]
    assert failed[check] == pytest.approx(expected, abs=1e-9)
    assert failures(verdicts, "trajectory_id", "traj-a") == {}
    (row,) = [r for r in verdicts if r["trajectory_id"] == "traj-b" and r["check_name"] == check]
    assert row["detail"].startswith("FAILED") and "\n" not in row["detail"]


def test_relative_improvement_is_skipped_when_z0_was_already_good():
    untouched = {**CLEAN["b"], "initial_score": 0.2, "final_score": 0.2, "steps": 0}
    verdicts = judge(output_tables([CLEAN["a"], untouched], CFG), CFG)
    (row,) = [r for r in verdicts if r["trajectory_id"] == "traj-b" and r["check_name"] == "relative_improvement"]
    assert row["passed"] and row["observed"] is None and "not applicable" in row["detail"]


def test_the_controls_pass_beyond_the_margin_and_pass_when_missing():
    controlled = {
        **CLEAN["b"],
        "thinking_gain": 0.2,
        "specificity": 0.01,
        "no_thinking_score": 0.8,
        "other_thinking_score": 0.61,
        "control_final_score": 0.6,
        "donor_trajectory_id": "traj-a",
    }
    verdicts = judge(output_tables([CLEAN["a"], controlled], CFG), CFG)
    rows = {(r["trajectory_id"], r["check_name"]): r for r in verdicts if r["check_name"].startswith("beats_")}
    assert all(r["passed"] for r in rows.values())
    assert rows["traj-b", "beats_no_thinking"]["observed"] == pytest.approx(0.2)
    assert "no thinking 0.8000, final thinking 0.6000" in rows["traj-b", "beats_no_thinking"]["detail"]
    assert "traj-a 0.6100" in rows["traj-b", "beats_other_thinking"]["detail"]
    for check in ("beats_no_thinking", "beats_other_thinking"):  # no control stored: empty, and it passes
        assert rows["traj-a", check]["observed"] is None and "not applicable" in rows["traj-a", check]["detail"]
    margin = {s.name: s.threshold for s in check_specs(CFG, accept_margin=0.25)}
    assert margin["beats_no_thinking"] == margin["beats_other_thinking"] == 0.25


LONG_QUERY = (
    "Write a letter from an old sailor to his granddaughter explaining why he never learned to swim, "
    "why he kept going to sea anyway, what the storms taught him about fear and patience, which ports he "
    "still dreams about, and what he hopes she will do with the small wooden boat he carved for her last winter."
)


def input_tables(rows: list[dict]) -> dict:
    frame = pl.DataFrame([{"example_id": r["example_id"], "query": r["query"], "answer": r["answer"]} for r in rows])
    return {INPUTS: (example_metrics(frame, CFG), "example_id")}


def jaccard_3(a: str, b: str) -> float:
    sa, sb = (set(zip(*[words(t)[i:] for i in range(3)])) for t in (a, b))
    return len(sa & sb) / len(sa | sb)


REPEATED_ANSWER = ANSWER_B + "\n\n" + "The ovens hum and the bread rises. " * 5
NEAR_QUERY = LONG_QUERY.replace("granddaughter", "grandson")
INPUT_BREAKS = {
    "query_duplicate": ({"query": QUERY_A.upper().replace(".", "!")}, 1.0),
    "answer_duplicate": ({"answer": ANSWER_A}, 1.0),
    "answer_repetition": ({"answer": REPEATED_ANSWER}, repeated_share(REPEATED_ANSWER, 4)),
}


def test_clean_examples_pass_every_input_check():
    verdicts = judge(input_tables([CLEAN["a"], CLEAN["b"]]), CFG)
    assert verdicts and all(r["passed"] for r in verdicts)
    assert all(r["trajectory_id"] is None and r["example_id"] for r in verdicts)


@pytest.mark.parametrize("check", sorted(INPUT_BREAKS))
def test_breaking_one_input_check_fails_exactly_that_check(check):
    change, expected = INPUT_BREAKS[check]
    verdicts = judge(input_tables([CLEAN["a"], {**CLEAN["b"], **change}]), CFG)
    failed = failures(verdicts, "example_id", "ex-b")
    assert list(failed) == [check] and failed[check] == pytest.approx(expected)
    assert failures(verdicts, "example_id", "ex-a") == {}  # the first of two duplicates is kept


def test_a_near_duplicate_query_fails_with_its_similarity():
    a = {**CLEAN["a"], "query": LONG_QUERY}
    b = {**CLEAN["b"], "query": NEAR_QUERY}
    verdicts = judge(input_tables([a, b]), CFG)
    failed = failures(verdicts, "example_id", "ex-b")
    assert list(failed) == ["query_duplicate"]
    assert failed["query_duplicate"] == pytest.approx(jaccard_3(LONG_QUERY, NEAR_QUERY))
    (row,) = [r for r in verdicts if r["example_id"] == "ex-b" and r["check_name"] == "query_duplicate"]
    assert "ex-a" in row["detail"]


def test_gx_verdicts_match_the_bounds_on_many_rows():
    rows = []
    for i in range(30):
        rows.append(
            {
                **CLEAN["a"],
                "trajectory_id": f"t{i}",
                "example_id": f"e{i}",
                "thinking_tokens": 60 + 10 * i,
                "thinking": f"Trajectory number {i}. " + THINKING_B,
                "final_score": 0.9 - i * 0.01,
            }
        )
    tables = output_tables(rows, CFG)
    verdicts = judge(tables, CFG)
    specs = {s.name: s for s in check_specs(CFG)}
    for r in verdicts:
        if r["check_name"] != "thinking_duplicate":  # depends on row order, not on the row alone
            assert r["passed"] == specs[r["check_name"]].holds(r["observed"]), r


def test_data_docs_are_written(tmp_path):
    judge({**output_tables([CLEAN["a"], CLEAN["b"]], CFG), **input_tables([CLEAN["a"], CLEAN["b"]])}, CFG, tmp_path)
    index = tmp_path / "index.html"
    assert index.exists()
    pages = {p.name for p in tmp_path.rglob("*.html")}
    assert {"examples.html", "trajectories.html"} <= pages


# -- a run in the store --------------------------------------------------------------------------


def test_validate_stores_every_verdict_and_keeps_failures(tmp_path):
    bad = {**CLEAN["b"], "initial_finish_reason": "length"}
    store = fill_store(tmp_path / "q.duckdb", [CLEAN["a"], bad])
    try:
        result = validate(store, "run-1", CFG, tmp_path / "docs")
        checks = store.query("SELECT * FROM checks WHERE run_id = 'run-1'")
        n_out = len([s for s in check_specs(CFG) if s.suite == OUTPUTS])
        n_in = len([s for s in check_specs(CFG) if s.suite == INPUTS])
        assert checks.height == 2 * n_out + 2 * n_in
        failed = checks.filter(~pl.col("passed"))
        assert failed.select("trajectory_id", "check_name", "observed").rows() == [("traj-b", "thinking_closed", 0.0)]
        assert "initial finish reason: length" in failed["detail"][0]
        verdicts = store.query("SELECT trajectory_id, passed, reasons FROM trajectory_verdicts ORDER BY 1").rows()
        assert verdicts[0] == ("traj-a", True, None)
        assert verdicts[1][:2] == ("traj-b", False) and verdicts[1][2].startswith("thinking_closed (FAILED")
        assert store.query("SELECT trajectory_id FROM passed_trajectories")["trajectory_id"].to_list() == ["traj-a"]
        assert result.passed == 1 and result.trajectories == 2
        assert result.pass_rates["trajectories.thinking_closed"] == 0.5
        assert result.data_docs and result.data_docs.endswith("index.html")
    finally:
        store.close()


def test_an_input_failure_fails_the_trajectory_of_that_example(tmp_path):
    dupe = {**CLEAN["b"], "answer": ANSWER_A}
    store = fill_store(tmp_path / "q.duckdb", [CLEAN["a"], dupe])
    try:
        validate(store, "run-1", CFG, None)
        verdicts = dict(store.query("SELECT trajectory_id, reasons FROM trajectory_verdicts").rows())
        assert verdicts["traj-a"] is None and verdicts["traj-b"].startswith("answer_duplicate (FAILED")
    finally:
        store.close()


def test_a_second_validation_supersedes_the_first_and_keeps_it(tmp_path):
    store = fill_store(tmp_path / "q.duckdb", [CLEAN["a"], CLEAN["b"]])
    try:
        validate(store, "run-1", CFG, None)
        validate(store, "run-1", QualityConfig(min_thinking_tokens=145), None)
        assert store.query("SELECT count(DISTINCT validation_id) AS n FROM checks")["n"][0] == 2
        assert store.query("SELECT trajectory_id FROM passed_trajectories")["trajectory_id"].to_list() == ["traj-a"]
        rates = dict(store.query("SELECT check_name, pass_rate FROM check_pass_rates").rows())
        assert rates["min_thinking_tokens"] == 0.5 and rates["thinking_closed"] == 1.0
    finally:
        store.close()


def test_a_resumed_trajectory_finds_its_z0_in_the_earlier_run(tmp_path):
    store = fill_store(tmp_path / "q.duckdb", [CLEAN["a"], CLEAN["b"]], initial_run="run-0")
    try:
        validate(store, "run-1", CFG, None)
        closed = store.query("SELECT observed FROM checks WHERE check_name = 'thinking_closed'")["observed"].to_list()
        assert closed == [1.0, 1.0]
    finally:
        store.close()
