"""The controls without a model: the derangement, the requests, and the store's rows and view with a scripted scorer."""

from __future__ import annotations

import random

import pytest

from reer.models.base import ModelStats
from reer.settings import SearchConfig
from reer.tasks.controls import (
    FINAL,
    INITIAL,
    NO_THINKING,
    OTHER_THINKING,
    ControlsMismatch,
    compute,
    control_figures,
    control_requests,
    derangement,
)
from reer.tasks.scoring import split_reference
from tests.tasks.crafted import CLEAN, THIRD, fill_store

MIN_CHARS = 20  # the crafted answers are short: their first paragraphs stay apart at this size
CONFIG = SearchConfig(min_segment_chars=MIN_CHARS)

# -- the derangement ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_the_derangement_has_no_fixed_point_and_is_a_permutation(n):
    ids = [f"t{i:02d}" for i in range(n)]
    donors = derangement(ids)
    assert set(donors) == set(ids) and sorted(donors.values()) == ids  # everyone gives once, takes once
    assert all(donor != t for t, donor in donors.items())


def test_the_derangement_takes_the_next_id_in_sorted_order_whatever_the_input_order():
    ids = ["c", "a", "d", "b"]
    expected = {"a": "b", "b": "c", "c": "d", "d": "a"}
    for _ in range(5):
        random.shuffle(ids)
        assert derangement(ids) == expected


def test_one_or_no_trajectory_has_no_other_thinking():
    assert derangement(["only"]) == {} and derangement([]) == {}


# -- the requests -------------------------------------------------------------------------------


def chat(messages) -> str:
    """A stand-in chat template: the user turn between markers."""
    return f"<user>{messages[0][1]}</user>\n"


def input_row(name: str, verified: bool = True) -> dict:
    """A row of queries/control_inputs for the crafted item `name`."""
    item = {**CLEAN, "c": THIRD}[name]
    return {
        "trajectory_id": item["trajectory_id"],
        "query": item["query"],
        "reference": item["answer"],
        "final_thinking": item["thinking"],
        "initial_thinking": item["thinking"] + " (draft)",
        "initial_verified_score": item["initial_score"] if verified else None,
        "final_verified_score": item["final_score"] if verified else None,
        "scorer_fingerprint": "fp",
    }


def test_no_thinking_is_an_empty_think_block_and_the_answer_is_scored_as_the_search_scores_it():
    (request,) = [r for r in control_requests([input_row("a")], chat, MIN_CHARS) if r.kind == NO_THINKING]
    split = split_reference(CLEAN["a"]["answer"], MIN_CHARS)
    # The search's template with nothing between the tags: one blank line, nothing standing in for z.
    assert (
        request.request.context == f"<user>{CLEAN['a']['query']}</user>\n<think>\n\n</think>\n<answer>\n{split.context}"
    )
    assert request.request.target == split.target and request.donor_trajectory_id is None


def test_each_trajectory_reads_the_next_ones_final_thinking():
    rows = [input_row("b"), input_row("a"), input_row("c")]
    requests = control_requests(rows, chat, MIN_CHARS)
    assert sorted((r.trajectory_id, r.kind) for r in requests) == sorted(
        (t, k) for t in ("traj-a", "traj-b", "traj-c") for k in (NO_THINKING, OTHER_THINKING)
    )
    others = {r.trajectory_id: r for r in requests if r.kind == OTHER_THINKING}
    assert {t: r.donor_trajectory_id for t, r in others.items()} == {
        "traj-a": "traj-b",
        "traj-b": "traj-c",
        "traj-c": "traj-a",
    }
    # traj-a's query and answer, traj-b's thinking.
    context = others["traj-a"].request.context
    assert CLEAN["a"]["query"] in context and CLEAN["b"]["thinking"] in context
    assert CLEAN["a"]["thinking"] not in context
    assert others["traj-a"].request.target == split_reference(CLEAN["a"]["answer"], MIN_CHARS).target


def test_unverified_outcomes_get_z0_and_z_star_rescored_in_the_same_call():
    requests = control_requests([input_row("a", verified=False), input_row("b")], chat, MIN_CHARS)
    kinds = {(r.trajectory_id, r.kind) for r in requests}
    assert ("traj-a", INITIAL) in kinds and ("traj-a", FINAL) in kinds
    assert not {("traj-b", INITIAL), ("traj-b", FINAL)} & kinds
    (initial,) = [r for r in requests if r.kind == INITIAL]
    assert CLEAN["a"]["thinking"] + " (draft)" in initial.request.context


def test_a_single_trajectory_gets_only_the_no_thinking_control():
    assert [r.kind for r in control_requests([input_row("a")], chat, MIN_CHARS)] == [NO_THINKING]


# -- against a store, with a scripted scorer ----------------------------------------------------


class ScriptedScorer:
    """Answers each sequence with one log-probability per target character, set by the thinking it holds."""

    model_id, fingerprint, dtype = "scripted", "fp", "float32"

    def __init__(self, window: int = 10_000) -> None:
        self.context_window, self.stats, self.calls = window, ModelStats(), []

    def render_chat(self, messages) -> str:
        return chat(messages)

    def request_tokens(self, request) -> int:
        return len(request.context) + len(request.target)

    def logprob(self, context: str) -> float:
        if "<think>\n\n</think>" in context:
            return -1.0  # no thinking
        for item in (*CLEAN.values(), THIRD):
            if f"<user>{item['query']}</user>" in context:
                return -0.5 if item["thinking"] in context else -0.8  # its own z*, else another's
        raise AssertionError("unknown sequence")

    def score(self, requests):
        self.calls.append(len(requests))
        return [[self.logprob(r.context)] * len(r.target) for r in requests]


@pytest.fixture
def store(tmp_path):
    store = fill_store(tmp_path / "reer.duckdb", [CLEAN["a"], CLEAN["b"], THIRD])
    yield store
    store.close()


def test_the_controls_are_stored_once_per_trajectory_and_kind_and_a_recompute_replaces_them(store):
    scorer = ScriptedScorer()
    result = compute(store, "run-1", scorer, CONFIG)
    # No verified scores in the crafted outcomes: z(0) and z* are re-scored beside the controls, in one call.
    assert scorer.calls == [12] and result.sequences == 12 and result.unscored == 0
    compute(store, "run-1", scorer, CONFIG)
    rows = store.query("SELECT * FROM controls ORDER BY trajectory_id, kind").to_dicts()
    assert len(rows) == 12 and {(r["trajectory_id"], r["kind"]) for r in rows} == {
        (t, k) for t in ("traj-a", "traj-b", "traj-c") for k in (INITIAL, FINAL, NO_THINKING, OTHER_THINKING)
    }
    assert {r["dtype"] for r in rows} == {"float32"} and {r["scorer_fingerprint"] for r in rows} == {"fp"}
    view = {r["trajectory_id"]: r for r in store.query("SELECT * FROM trajectory_controls").to_dicts()}
    assert view["traj-b"]["donor_trajectory_id"] == "traj-c"
    for r in view.values():  # score = -mean(clip(logp)): 0.5 with its own thinking, 1.0 without, 0.8 with another's
        assert r["final_score"] == pytest.approx(0.5)
        assert r["thinking_gain"] == pytest.approx(0.5) and r["specificity"] == pytest.approx(0.3)
    figures = {f["control"]: f for f in control_figures(store.query, "run-1")}
    assert figures[NO_THINKING]["n"] == figures[NO_THINKING]["beats"] == 3 and figures[NO_THINKING]["share"] == 1.0
    assert figures[OTHER_THINKING]["mean_gain"] == pytest.approx(0.3)


def test_a_verified_outcome_is_not_rescored_and_the_view_reads_its_float32_score(store):
    with store.transaction() as con:  # a write: Store.query is for reads
        con.exec_driver_sql("UPDATE outcomes SET initial_verified_score = 0.9, final_verified_score = 0.7")
    scorer = ScriptedScorer()
    compute(store, "run-1", scorer, CONFIG)
    assert scorer.calls == [6]
    (row,) = store.query("SELECT * FROM trajectory_controls WHERE trajectory_id = 'traj-a'").to_dicts()
    assert row["final_score"] == 0.7 and row["thinking_gain"] == pytest.approx(1.0 - 0.7)


def test_a_control_too_long_for_the_window_is_kept_with_its_reason(store):
    rows = [input_row(name, verified=False) for name in ("a", "b", "c")]  # what the crafted store holds
    sizes = sorted(len(r.request.context) + len(r.request.target) for r in control_requests(rows, chat, MIN_CHARS))
    scorer = ScriptedScorer(window=sizes[-1] - 1)  # the longest sequence does not fit
    result = compute(store, "run-1", scorer, CONFIG)
    assert result.unscored >= 1
    unscored = store.query("SELECT * FROM controls WHERE score IS NULL").to_dicts()
    assert len(unscored) == result.unscored and all(r["note"].startswith("needs ") for r in unscored)


def test_a_different_scorer_is_refused_before_anything_is_scored(store):
    with store.transaction() as con:
        con.exec_driver_sql("UPDATE trajectories SET scorer_fingerprint = 'other'")
    scorer = ScriptedScorer()
    with pytest.raises(ControlsMismatch, match="run run-1 was scored by model other"):
        compute(store, "run-1", scorer, CONFIG)
    assert scorer.calls == [] and store.query("SELECT * FROM controls").is_empty()


def test_a_run_with_one_completed_trajectory_stores_no_other_thinking(tmp_path):
    store = fill_store(tmp_path / "one.duckdb", [CLEAN["a"]])
    try:
        result = compute(store, "run-1", ScriptedScorer(), CONFIG)
        kinds = store.query("SELECT kind FROM controls ORDER BY kind")["kind"].to_list()
        assert kinds == [FINAL, INITIAL, NO_THINKING]
        assert any("no other thinking to read" in line for line in result.lines())
    finally:
        store.close()
