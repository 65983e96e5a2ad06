"""Search strategies beyond the paper's single greedy pass: more passes and refining by impact first.

Unit tests of the control logic with the scripted model of test_search_machine; the real model runs them
in bench/search.py.
"""

import pytest

from reer.models.base import Generation
from reer.settings import SearchConfig
from reer.tasks.driver import drive
from reer.tasks.records import OutcomeRecord, RevisionRecord
from reer.tasks.search import ItemSearch, ScoringNeed
from tests.tasks.test_search_machine import PARAS, ScriptedModel, make_search, run


class CappedModel(ScriptedModel):
    """Scores a thinking by its 'GOOD' markers, but no better past `cap` of them: later rewrites gain nothing."""

    def __init__(self, cap):
        super().__init__(lambda seed, i: Generation(f" GOOD rewrite {seed}-{i} " + "x" * 40, "stop", 20))
        self.cap = cap

    def score(self, requests):
        return [[-1.9 + 0.4 * min(r.context.count("GOOD"), self.cap)] * 10 for r in requests]


class ImpactModel(ScriptedModel):
    """Without its last paragraph the answer is hardest to predict, then without its second, then its first."""

    weights = {"First": 0.05, "Then": 0.1, "Finally": 0.3}

    def __init__(self):
        super().__init__(lambda seed, i: Generation(f" GOOD rewrite {seed}-{i} " + "x" * 40, "stop", 20))
        self.scorings: list[int] = []

    def score(self, requests):
        self.scorings.append(len(requests))
        out = []
        for r in requests:
            missing = sum(w for word, w in self.weights.items() if word not in r.context)
            out.append([-(1.0 + missing) + 0.01 * r.context.count("GOOD")] * 10)
        return out


def outcome_of(records):
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    return outcome


def candidates_of(records):
    return [r for r in records if isinstance(r, RevisionRecord) and r.kind == "candidate"]


def test_a_second_pass_runs_while_the_first_gains_and_refines_every_segment_again():
    search, _ = make_search(SearchConfig(min_thinking_tokens=10, passes=2))
    records = run(search, ScriptedModel(lambda seed, i: Generation(f" GOOD {seed}-{i} " + "x" * 40, "stop", 20)))
    outcome = outcome_of(records)
    assert outcome.steps == 2 * len(PARAS) and outcome.reason == "pass_complete"
    assert [c.segment_index for c in candidates_of(records)[::2]] == [0, 1, 2, 0, 1, 2]
    # Every rewrite holds one marker: pass 1 gains at each segment, pass 2's rewrites of rewrites tie and stay out.
    assert outcome.accepted_edits == 3 and [c.accepted for c in candidates_of(records)].count(True) == 3


def test_passes_stop_once_a_whole_pass_gains_nothing():
    search, _ = make_search(SearchConfig(min_thinking_tokens=10, passes=5))
    records = run(search, CappedModel(cap=2))
    outcome = outcome_of(records)
    # Pass 1 gains at steps 1 and 2; pass 2 (steps 4-6) gains nothing, so pass 3 never starts.
    assert outcome.reason == "converged" and outcome.steps == 2 * len(PARAS)
    assert outcome.accepted_edits == 2


def test_a_second_pass_shows_the_generator_the_segments_as_they_stand():
    search, model = make_search(SearchConfig(min_thinking_tokens=10, passes=2))
    prompts = []
    generate = model.generate
    model.generate = lambda requests: prompts.extend(r.messages[-1][1] for r in requests) or generate(requests)
    run(search, model)
    # The fourth rewrite is of segment 1 again: the prompt shows it and segments 2 and 3 as pass 1 left them.
    assert prompts[4].count("GOOD") == 3


def test_impact_order_refines_first_the_segment_whose_removal_hurts_most():
    search, _ = make_search(SearchConfig(min_thinking_tokens=10, order="impact"))
    model = ImpactModel()
    records = run(search, model)
    assert [c.segment_index for c in candidates_of(records)[::2]] == [2, 1, 0]
    assert model.scorings[1] == len(PARAS)  # z(0) without each segment, in one call after z(0)'s own
    assert outcome_of(records).reason == "pass_complete"


def test_impact_order_with_max_steps_refines_only_the_segments_that_matter_most():
    search, _ = make_search(SearchConfig(min_thinking_tokens=10, order="impact", max_steps=1))
    records = run(search, ImpactModel())
    assert [c.segment_index for c in candidates_of(records)] == [2, 2]


def test_a_single_segment_order_needs_no_ablation():
    search, _ = make_search(SearchConfig(min_thinking_tokens=10, order="impact"))
    search.on_generated([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
    search.on_scored([[-1.0] * 10])
    assert isinstance(search.need, ScoringNeed) and len(search.need.requests) == 3  # the ablation


@pytest.mark.parametrize("config", [dict(passes=3), dict(order="impact", passes=2)])
def test_a_resumed_search_ends_as_an_uninterrupted_one_under_every_strategy(config):
    cfg = SearchConfig(min_thinking_tokens=10, **config)

    def fresh():
        search, _ = make_search(cfg)
        return search, CappedModel(cap=3) if "order" not in config else ImpactModel()

    search, model = fresh()
    uninterrupted: list = []
    drive([search], model, model, uninterrupted.extend)
    crashes = 0
    for crash_after in range(1, 40):
        search, model = fresh()
        stored: list = []
        calls = {"n": 0}

        def sink(records, stored=stored, calls=calls, crash_after=crash_after):
            if calls["n"] < crash_after:
                stored.extend(records)
            calls["n"] += 1

        drive([search], model, model, sink)
        if calls["n"] <= crash_after:
            break  # every store point has been tried
        if any(isinstance(r, OutcomeRecord) for r in stored):
            continue
        crashes += 1
        again, model = fresh()
        resumed, records = ItemSearch.resume(
            again.item,
            cfg,
            again.query_prompt,
            again.count_tokens,
            [r for r in stored if isinstance(r, RevisionRecord)],
        )
        rest = list(records)
        drive([resumed], model, model, rest.extend)

        def fields(r):
            names = ("revision_id", "score", "accepted", "thinking", "reason", "steps", "accepted_edits")
            return (type(r).__name__, *(getattr(r, name, None) for name in names))

        assert sorted(map(fields, stored + rest), key=str) == sorted(map(fields, uninterrupted), key=str)
    assert crashes > 3
