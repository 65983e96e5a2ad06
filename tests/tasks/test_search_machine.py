"""The search state machine and driver, with a scripted model: a unit test of the control logic.

The real model runs the same machine in tests/flows/test_synthesize.py.
"""

from reer.models.base import Generation, ModelStats
from reer.settings import SearchConfig
from reer.tasks.prompts import REFINE_OPEN
from reer.tasks.records import OutcomeRecord, RevisionRecord
from reer.tasks.scoring import split_reference
from reer.tasks.search import GenerationNeed, ItemSearch, ScoringNeed, SearchItem, drive

PARAS = [
    "First I picture who reads this and why they asked for it, and what they hope to feel." * 2,
    "Then the middle needs one concrete image that carries the whole idea from start to end." * 2,
    "Finally the ending should turn back to the opening image so the piece closes its circle." * 2,
]
REFERENCE = "R" * 150 + "\n\n" + "S" * 150


class ScriptedModel:
    """Returns generations scripted by request seed; scores a thinking by how many 'GOOD' markers it holds."""

    model_id = "scripted"
    context_window = 4096

    def __init__(self, rewrites):
        self.rewrites = rewrites
        self.stats = ModelStats()
        self.calls = 0

    def generate(self, requests):
        out = []
        for r in requests:
            if r.prefill.startswith("<think>"):
                out.append([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
            else:
                out.append([self.rewrites(r.seed % 1000, i) for i in range(r.n)])
        self.calls += 1
        return out

    def score(self, requests):
        return [[-1.9 + 0.4 * r.context.count("GOOD")] * 10 for r in requests]

    def render_chat(self, messages):
        return "U:" + messages[-1][1] + "\nA:"

    def count_tokens(self, text):
        return len(text.split())


def make_search(config=None, trajectory="t1"):
    model = ScriptedModel(lambda seed, i: Generation(f" GOOD rewrite {seed}-{i} " + "x" * 40, "stop", 20))
    item = SearchItem(trajectory, "e1", "Write something.", split_reference(REFERENCE), REFERENCE, "en", 5)
    return ItemSearch(
        item, config or SearchConfig(min_thinking_tokens=10), "U:Write something.\nA:", model.count_tokens
    ), model


def run(search, model):
    records = []
    drive([search], model, model, records.extend)
    return records


def test_every_step_is_recorded_and_the_score_never_rises():
    search, model = make_search()
    records = run(search, model)
    revisions = [r for r in records if isinstance(r, RevisionRecord)]
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    assert revisions[0].kind == "initial" and revisions[0].accepted
    candidates = [r for r in revisions if r.kind == "candidate"]
    assert len(candidates) == 2 * len(PARAS)  # k=2 per segment, one pass over 3 segments
    assert outcome.status == "completed" and outcome.reason == "pass_complete"
    assert outcome.final_score <= outcome.initial_score
    accepted = [r.score for r in revisions if r.accepted]
    assert accepted == sorted(accepted, reverse=True)
    assert all(c.parent_id is not None for c in candidates)


def test_stops_as_soon_as_the_score_is_under_tau():
    search, model = make_search(SearchConfig(min_thinking_tokens=10, tau=1.8))
    records = run(search, model)
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    assert outcome.reason == "below_tau" and outcome.steps == 1


def test_max_steps_bounds_the_pass():
    search, model = make_search(SearchConfig(min_thinking_tokens=10, max_steps=1))
    (outcome,) = [r for r in run(search, model) if isinstance(r, OutcomeRecord)]
    assert outcome.steps == 1 and outcome.reason == "pass_complete"


def test_unparsable_candidates_are_kept_with_their_reason_and_skipped():
    search, _ = make_search()
    model = ScriptedModel(lambda seed, i: Generation(" never closes", "length", 160))
    records = run(search, model)
    unparsable = [r for r in records if isinstance(r, RevisionRecord) and r.status == "unparsable"]
    assert len(unparsable) == 6 and all(r.note == "no closing tag before the token limit" for r in unparsable)
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    assert outcome.final_score == outcome.initial_score and outcome.accepted_edits == 0


def test_short_initial_thinking_is_rejected():
    search, model = make_search(SearchConfig(min_thinking_tokens=10_000))
    records = run(search, model)
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    assert outcome.status == "rejected" and outcome.reason == "too_short"
    assert records[0].status == "rejected" and "under 10000" in records[0].note


def test_unfinished_thinking_is_trimmed_or_rejected_as_configured():
    for policy, expected in (("reject", "unfinished_thinking"), ("trim", "pass_complete")):
        search, model = make_search(SearchConfig(min_thinking_tokens=10, on_unfinished=policy))
        model.generate = lambda requests, m=model: [
            [Generation(" " + "\n\n".join(PARAS) + "\n\nand then I was about to", "length", 384)]
            if r.prefill.startswith("<think>")
            else [Generation(" GOOD " + "y" * 40, "stop", 9)] * r.n
            for r in requests
        ]
        records = run(search, model)
        (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
        assert outcome.reason == expected
        if policy == "trim":
            assert not records[0].thinking.endswith("about to")


def test_the_machine_says_what_it_needs():
    search, _ = make_search()
    assert isinstance(search.need, GenerationNeed) and search.need.request.prefill.startswith("<think>\n")
    search.on_generated([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
    assert isinstance(search.need, ScoringNeed) and len(search.need.requests) == 1
    assert search.need.requests[0].target == "S" * 150


def test_driver_batches_generations_across_items():
    searches, model = [], None
    for t in range(5):
        s, model = make_search(trajectory=f"t{t}")
        searches.append(s)
    calls = []
    original = model.generate
    model.generate = lambda requests: calls.append(len(requests)) or original(requests)
    drive(searches, model, model, lambda records: None, generation_rows=32)
    assert calls[0] == 5  # the five initial generations went out together


def test_a_search_resumed_after_any_round_ends_as_an_uninterrupted_one():
    search, model = make_search()
    uninterrupted = run(search, model)
    rounds = 0
    while True:
        rounds += 1
        first, model = make_search()
        stored: list = []
        calls = {"n": 0}

        def sink(records, stored=stored, calls=calls, rounds=rounds):
            if calls["n"] < rounds:  # the rounds before the crash reached the store
                stored.extend(records)
            calls["n"] += 1

        drive([first], model, model, sink)
        if calls["n"] <= rounds:
            break  # no round was lost: every crash point has been tried
        if any(isinstance(r, OutcomeRecord) for r in stored):
            continue
        fresh, model = make_search()
        resumed, records = ItemSearch.resume(
            fresh.item,
            fresh.config,
            fresh.query_prompt,
            fresh.count_tokens,
            [r for r in stored if isinstance(r, RevisionRecord)],
        )
        rest: list = list(records)
        drive([resumed], model, model, rest.extend)
        combined = stored + rest

        def key(r):
            return (type(r).__name__, getattr(r, "step", 0), getattr(r, "candidate_index", None) or 0)

        assert [
            (type(r).__name__, getattr(r, "revision_id", None), getattr(r, "score", None), getattr(r, "thinking", None))
            for r in sorted(combined, key=key)
        ] == [
            (type(r).__name__, getattr(r, "revision_id", None), getattr(r, "score", None), getattr(r, "thinking", None))
            for r in sorted(uninterrupted, key=key)
        ]
    assert rounds > 3


def test_a_rewrite_that_repeats_its_segment_is_kept_as_unchanged_and_not_scored():
    search, model = make_search()
    scored = []

    class Repeating(ScriptedModel):
        def generate(self, requests):
            out = []
            for r in requests:
                if r.prefill.startswith("<think>"):
                    out.append([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
                else:  # the model writes the segment it was asked to rewrite, word for word
                    segment, opening = search.segments[search.step - 1], r.prefill[len(REFINE_OPEN) :]
                    out.append([Generation(segment[len(opening) :], "stop", 20) for _ in range(r.n)])
            return out

        def score(self, requests):
            scored.extend(requests)
            return super().score(requests)

    records = run(search, Repeating(None))
    candidates = [r for r in records if isinstance(r, RevisionRecord) and r.kind == "candidate"]
    assert candidates and all(r.status == "unchanged" and r.score is None and not r.accepted for r in candidates)
    assert len(scored) == 1  # only z(0) was scored
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    assert outcome.accepted_edits == 0 and outcome.final_score == outcome.initial_score


def test_a_stop_waits_for_the_scoring_of_what_was_just_generated():
    import pytest

    from reer.interrupts import StopRequested

    search, model = make_search()
    records = []
    with pytest.raises(StopRequested):
        drive([search], model, model, records.extend, stop_requested=lambda: True)
    # z(0) was generated and scored before the stop: nothing generated was thrown away.
    (initial,) = [r for r in records if isinstance(r, RevisionRecord)]
    assert initial.kind == "initial" and initial.status == "scored" and initial.score is not None
    assert model.calls == 1  # and no rewrite was asked for after the stop


# -- the acceptance rule, with scores set exactly ----------------------------------------
# score = -mean(clip(logp, -2, 0)), so one scored token of log-probability -s scores exactly s.


def scored_as(*scores):
    return [[-s] for s in scores]


def at_first_step(initial=1.5):
    """A search whose z(0) scored `initial` and that now asks for segment 1's candidates."""
    search, _ = make_search()
    search.on_generated([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
    search.on_scored(scored_as(initial))
    assert isinstance(search.need, GenerationNeed) and search.step == 1 and search.best.score == initial
    return search


def step_with(candidate_scores, initial=1.5):
    """Run segment 1's step with one distinct rewrite per score; the search and the step's candidates."""
    search = at_first_step(initial)
    original = list(search.segments)
    rewrites = [Generation(f" rewrite number {c} of the first segment " + "x" * 30, "stop", 20) for c in range(2)]
    assert search.on_generated(rewrites) == [] and isinstance(search.need, ScoringNeed)
    records = search.on_scored(scored_as(*candidate_scores))
    candidates = [r for r in records if isinstance(r, RevisionRecord) and r.kind == "candidate"]
    assert [c.score for c in candidates] == list(candidate_scores)
    return search, candidates, original


def test_candidates_worse_than_the_incumbent_are_not_accepted_and_the_segment_stays():
    search, candidates, original = step_with((1.6, 1.7))
    assert not any(c.accepted for c in candidates)
    assert search.segments == original and search.best.kind == "initial" and search.best.score == 1.5
    assert search.accepted_edits == 0


def test_the_lowest_of_the_candidates_is_accepted_wherever_it_comes():
    for scores, winner in (((1.40, 1.30), 1), ((1.30, 1.40), 0)):
        search, candidates, original = step_with(scores)
        assert [c.accepted for c in candidates] == [c == winner for c in range(2)]
        assert search.best is candidates[winner] and search.best.score == 1.30
        assert search.segments[0] == candidates[winner].segment_text != original[0]
        assert search.segments[1:] == original[1:] and search.accepted_edits == 1


def test_a_candidate_that_only_ties_the_incumbent_is_not_accepted():
    search, candidates, original = step_with((1.5, 1.6))
    assert candidates[0].score == search.best.score == 1.5
    assert not any(c.accepted for c in candidates) and search.best.kind == "initial"
    assert search.segments == original and search.accepted_edits == 0


def test_a_score_equal_to_tau_does_not_stop_the_search():
    search = at_first_step(initial=0.25)  # "stop when under tau": 0.25 is not under 0.25
    assert not search.done and search.config.tau == 0.25
    search = at_first_step(initial=0.5)
    rewrites = [Generation(f" rewrite {c} of the first segment " + "x" * 30, "stop", 20) for c in range(2)]
    search.on_generated(rewrites)
    (outcome,) = [r for r in search.on_scored(scored_as(0.24, 0.3)) if isinstance(r, OutcomeRecord)]
    assert outcome.reason == "below_tau" and outcome.final_score == 0.24 and outcome.steps == 1


def test_search_defaults_are_the_authors_and_reach_the_requests():
    defaults = SearchConfig()
    assert (defaults.tau, defaults.max_steps, defaults.k, defaults.temperature, defaults.top_p) == (
        0.25,
        10,
        2,
        0.8,
        0.85,
    )
    search, _ = make_search(SearchConfig(min_thinking_tokens=10))
    request = search.need.request
    assert (request.n, request.temperature, request.top_p) == (1, 0.8, 0.85)  # z(0): one sample
    search.on_generated([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
    search.on_scored(scored_as(1.5))
    request = search.need.request
    assert (request.n, request.temperature, request.top_p) == (2, 0.8, 0.85)  # k rewrites per segment
