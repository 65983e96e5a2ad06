"""The search state machine and driver, with a scripted model: a unit test of the control logic.

The real model runs the same machine in tests/flows/test_synthesize.py.
"""

from dataclasses import replace

import pytest

from reer.models.base import Generation, GenerationRequest, ModelStats
from reer.settings import SearchConfig
from reer.tasks.driver import drive
from reer.tasks.prompts import REFINE_OPEN
from reer.tasks.records import OutcomeRecord, RevisionRecord
from reer.tasks.scoring import split_reference
from reer.tasks.search import GenerationNeed, ItemSearch, ScoringNeed, SearchItem, VerifyNeed
from reer.tasks.search_tasks import search_rejects

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

    def request_tokens(self, request):
        if isinstance(request, GenerationRequest):
            text = " ".join(content for _, content in request.messages) + " " + request.prefill
            return self.count_tokens(text) + request.max_new_tokens
        return self.count_tokens(request.context + " " + request.target) + 1


def make_search(config=None, trajectory="t1", verifying=False):
    model = ScriptedModel(lambda seed, i: Generation(f" GOOD rewrite {seed}-{i} " + "x" * 40, "stop", 20))
    item = SearchItem(trajectory, "e1", "Write something.", split_reference(REFERENCE), REFERENCE, "en", 5)
    config = config or SearchConfig(min_thinking_tokens=10)
    return ItemSearch(item, config, "U:Write something.\nA:", model.count_tokens, verifying), model


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
    # k=2 per step, each step sampled once more when none is usable: 3 steps x 4 samples, all stored
    assert len(unparsable) == 12 and all(r.note == "no closing tag before the token limit" for r in unparsable)
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


class CappedVerifier(ScriptedModel):
    """A float32 verifier that sees no gain past the second 'GOOD': the scorer's third win is rounding."""

    def __init__(self):
        super().__init__(None)
        self.requests = []

    def score(self, requests):
        self.requests.extend(requests)
        return [[-1.9 + 0.4 * min(r.context.count("GOOD"), 2)] * 10 for r in requests]


@pytest.mark.parametrize("verifying", [False, True])
def test_a_search_resumed_after_any_round_ends_as_an_uninterrupted_one(verifying):
    search, model = make_search(verifying=verifying)
    verifier = CappedVerifier()
    uninterrupted = []
    drive([search], model, model, uninterrupted.extend, verifier=verifier)
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

        drive([first], model, model, sink, verifier=CappedVerifier())
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
            verifying,
        )
        rest: list = list(records)
        drive([resumed], model, model, rest.extend, verifier=CappedVerifier())
        combined = stored + rest

        def key(r):
            return (type(r).__name__, getattr(r, "step", 0), getattr(r, "candidate_index", None) or 0)

        def fields(r):
            names = ("revision_id", "score", "verified_score", "accepted", "thinking", "final_verified_score")
            return (type(r).__name__, *(getattr(r, name, None) for name in names))

        assert [fields(r) for r in sorted(combined, key=key)] == [fields(r) for r in sorted(uninterrupted, key=key)]
    assert rounds > 3
    (outcome,) = [r for r in uninterrupted if isinstance(r, OutcomeRecord)]
    # Verified, the third step's win is refused: the verifier sees no gain in it.
    assert outcome.accepted_edits == (2 if verifying else 3)


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


# -- verified acceptance: bf16 proposes, the float32 verifier decides --------------------


def verified_first_step(initial=1.5, initial_verified=1.49):
    """A verifying search whose z(0) scored `initial` (and `initial_verified` in float32), at segment 1's rewrites."""
    search, _ = make_search(verifying=True)
    search.on_generated([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
    assert search.on_scored(scored_as(initial)) == [] and isinstance(search.need, VerifyNeed)
    (initial_record, *_) = search.on_verified(scored_as(initial_verified))
    assert initial_record.verified_score == initial_verified and initial_record.score == initial
    rewrites = [Generation(f" rewrite number {c} of the first segment " + "x" * 30, "stop", 20) for c in range(2)]
    search.on_generated(rewrites)
    return search


def test_a_bf16_win_the_verifier_does_not_confirm_is_refused_with_both_gaps_in_its_note():
    search = verified_first_step()
    assert search.on_scored(scored_as(1.499, 1.6)) == []  # a bf16 win: held until it is verified
    assert isinstance(search.need, VerifyNeed) and len(search.need.requests) == 1  # the winner alone
    assert "rewrite number 0" in search.need.requests[0].context
    records = search.on_verified(scored_as(1.4900004))  # in float32 it gains nothing
    winner, other = sorted((r for r in records if isinstance(r, RevisionRecord)), key=lambda r: r.candidate_index)
    assert not winner.accepted and not other.accepted and winner.verified_score == 1.4900004
    assert other.verified_score is None  # never verified: it lost in bf16
    assert winner.note == (
        "not accepted: 0.001000 below the best in the scorer's dtype, -0.000000 in float32, not above the 1e-05 margin"
    )
    assert search.best.kind == "initial" and search.accepted_edits == 0


def test_a_bf16_win_the_verifier_confirms_is_accepted_with_its_verified_score():
    search = verified_first_step()
    search.on_scored(scored_as(1.6, 1.45))
    assert "rewrite number 1" in search.need.requests[0].context
    records = search.on_verified(scored_as(1.46))
    (winner,) = [r for r in records if isinstance(r, RevisionRecord) and r.accepted]
    assert winner.candidate_index == 1 and winner.verified_score == 1.46 and winner.note is None
    assert search.best is winner and search.accepted_edits == 1
    assert search.segments[0] == winner.segment_text


def test_no_verification_when_no_candidate_beats_the_incumbent_as_scored():
    search = verified_first_step()
    records = search.on_scored(scored_as(1.5, 1.7))  # a tie and a loss: the step ends at once
    assert isinstance(search.need, GenerationNeed) and search.step == 2
    assert [r.verified_score for r in records if isinstance(r, RevisionRecord)] == [None, None]


def test_the_verifier_is_sent_only_z0_and_the_winners_that_beat_the_incumbent():
    search, model = make_search(verifying=True)
    verifier, records = CappedVerifier(), []
    drive([search], model, model, records.extend, verifier=verifier)
    assert len(verifier.requests) == 1 + 3  # z(0), then each step's winner: every one beat the incumbent in bf16
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    assert (outcome.initial_verified_score, outcome.final_verified_score) == pytest.approx((1.9, 1.1))
    assert (outcome.initial_score, outcome.final_score) == pytest.approx((1.9, 1.1))
    assert outcome.accepted_edits == 2  # the third win is refused: the scorer says 0.7, the verifier 1.1


def test_identical_candidates_are_scored_once_and_both_stored():
    search = at_first_step()
    same = Generation(" the one rewrite both samples wrote " + "x" * 30, "stop", 20)
    search.on_generated([same, same])
    assert isinstance(search.need, ScoringNeed) and len(search.need.requests) == 1
    records = [r for r in search.on_scored(scored_as(1.2)) if isinstance(r, RevisionRecord)]
    first, second = sorted(records, key=lambda r: r.candidate_index)
    assert first.score == second.score == 1.2 and first.status == second.status == "scored"
    assert first.accepted and not second.accepted and first.note is None
    assert second.note == "the same text as candidate 0: scored once, with it"
    assert second.thinking == first.thinking and second.revision_id != first.revision_id


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


# -- requests over a model's context window (the scripted model counts words as tokens) -----


def overflow_pair(config=None, query_prompt="U:" + "word " * 100):
    """A search that fits, and one whose scoring context is longer (its query prompt is), both scripted."""
    fits, _ = make_search(config)
    item = replace(fits.item, trajectory_id="long", query="Write something. " + "word " * 300)
    return fits, ItemSearch(item, fits.config, query_prompt, fits.count_tokens)


def sent(model):
    """Record every request the model is sent."""
    requests = []
    generate, score = model.generate, model.score
    model.generate = lambda batch: requests.extend(batch) or generate(batch)
    model.score = lambda batch: requests.extend(batch) or score(batch)
    return requests


def outcome_of(records, trajectory):
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord) and r.trajectory_id == trajectory]
    return outcome


def test_a_generation_over_the_window_ends_its_item_and_the_others_go_on():
    fits, too_long = overflow_pair()
    model = ScriptedModel(lambda seed, i: Generation(f" GOOD rewrite {seed}-{i} " + "x" * 40, "stop", 20))
    model.context_window = 600
    needed = model.request_tokens(too_long.need.request)
    assert model.request_tokens(fits.need.request) <= 600 < needed
    requests, records = sent(model), []
    drive([too_long, fits], model, model, records.extend)
    outcome = outcome_of(records, "long")
    assert (outcome.status, outcome.reason, outcome.steps, outcome.final_revision_id) == (
        "rejected",
        "context_overflow",
        0,
        None,
    )
    assert outcome.note == f"z(0) needs {needed} tokens (its prompt and 384 new ones); the generator reads 600"
    assert not any(isinstance(r, RevisionRecord) and r.trajectory_id == "long" for r in records)
    assert not any("word word" in str(r) for r in requests)  # never sent
    assert outcome_of(records, "t1").reason == "pass_complete"
    (reject,) = search_rejects(records)
    assert (reject.reason, reject.detail, reject.trajectory_id) == ("context_overflow", outcome.note, "long")


def test_a_refine_prompt_over_the_window_ends_its_item_after_the_steps_it_did():
    # z(0) and its scoring fit; the refine prompt (whole thinking, 160 new tokens) does not.
    search, model = make_search(SearchConfig(min_thinking_tokens=10, max_initial_tokens=16))
    small, _ = make_search(SearchConfig(min_thinking_tokens=10, max_initial_tokens=16, max_refine_tokens=16), "t2")
    model.context_window = 300
    records = []
    drive([search, small], model, model, records.extend)
    outcome = outcome_of(records, "t1")
    (initial,) = [r for r in records if isinstance(r, RevisionRecord) and r.trajectory_id == "t1"]
    assert (outcome.status, outcome.reason, outcome.steps) == ("rejected", "context_overflow", 0)
    assert outcome.final_revision_id == initial.revision_id and initial.status == "scored"
    assert outcome.note.startswith("the rewrite of segment 1 needs ") and outcome.note.endswith("reads 300")
    assert outcome_of(records, "t2").reason == "pass_complete"


def test_an_initial_scoring_over_the_window_ends_its_item_with_its_thinking_kept():
    fits, too_long = overflow_pair()
    generator, scorer = make_search()[1], make_search()[1]
    scorer.context_window = 150
    requests, records = sent(scorer), []
    drive([too_long, fits], generator, scorer, records.extend)
    outcome = outcome_of(records, "long")
    (initial,) = [r for r in records if isinstance(r, RevisionRecord) and r.trajectory_id == "long"]
    assert (outcome.status, outcome.reason, outcome.final_revision_id) == ("rejected", "context_overflow", None)
    assert initial.status == "rejected" and initial.score is None and initial.thinking
    assert initial.note.startswith("scoring z(0) needs ") and initial.note.endswith("; the scorer reads 150")
    assert all(scorer.request_tokens(r) <= 150 for r in requests)
    assert outcome_of(records, "t1").reason == "pass_complete"
    (reject,) = search_rejects(records)
    assert (reject.reason, reject.detail) == ("context_overflow", initial.note)


def test_a_candidate_over_the_scorers_window_is_kept_unscored_and_its_step_goes_on():
    def rewrites(seed, i):  # the second rewrite of every step is far longer than the first
        return Generation(f" GOOD rewrite {seed}-{i} " + ("word " * 300 if i else "x" * 40), "stop", 20)

    search, _ = make_search()
    generator, scorer = ScriptedModel(rewrites), ScriptedModel(rewrites)
    scorer.context_window = 200
    batches = []
    requests = sent(scorer)
    drive([search], generator, scorer, batches.append)
    assert all(scorer.request_tokens(r) <= 200 for r in requests)
    for step in (1, 2, 3):  # a step's records are stored together, the set-aside one with the scored one
        (batch,) = [b for b in batches if any(getattr(r, "step", None) == step for r in b)]
        first, second = sorted((r for r in batch if isinstance(r, RevisionRecord)), key=lambda r: r.candidate_index)
        assert first.status == "scored" and first.score is not None
        assert second.status == "context_overflow" and second.score is None and not second.accepted
        assert second.note.startswith("scoring this rewrite needs ") and second.note.endswith("the scorer reads 200")
    outcome = outcome_of([r for b in batches for r in b], "t1")
    assert (outcome.status, outcome.reason, outcome.accepted_edits) == ("completed", "pass_complete", 3)


def test_a_step_whose_candidates_all_overflow_moves_on_as_with_unusable_ones():
    search, _ = make_search()
    generator = ScriptedModel(lambda seed, i: Generation(" GOOD" + " word" * 300, "stop", 20))
    scorer = ScriptedModel(generator.rewrites)
    scorer.context_window = 200
    records = []
    drive([search], generator, scorer, records.extend)
    candidates = [r for r in records if isinstance(r, RevisionRecord) and r.kind == "candidate"]
    assert len(candidates) == 6 and all(r.status == "context_overflow" and r.score is None for r in candidates)
    outcome = outcome_of(records, "t1")
    assert (outcome.reason, outcome.steps, outcome.accepted_edits) == ("pass_complete", 3, 0)
    assert outcome.final_score == outcome.initial_score


def test_an_overflowing_item_is_stored_with_its_outcome_and_its_reject(tmp_path):
    from reer.store import Store
    from reer.tasks.search_tasks import store_sink

    fits, too_long = overflow_pair()
    model = make_search()[1]
    model.context_window = 600
    store = Store(tmp_path / "reer.duckdb")
    try:
        drive([too_long, fits], model, model, store_sink(store, "run-1"))
        outcome = store.query("SELECT status, reason, note FROM outcomes WHERE trajectory_id = 'long'").to_dicts()
        rejects = store.query("SELECT stage, reason, detail, trajectory_id FROM rejects").to_dicts()
    finally:
        store.close()
    assert [(o["status"], o["reason"]) for o in outcome] == [("rejected", "context_overflow")]
    assert rejects == [
        {"stage": "search", "reason": "context_overflow", "detail": outcome[0]["note"], "trajectory_id": "long"}
    ]
    assert outcome[0]["note"].endswith("the generator reads 600")


# -- unusable samples are sampled again within a budget, and every one is stored ---------------


def test_a_short_z0_is_sampled_again_with_a_new_seed_and_every_sample_is_stored():
    search, _ = make_search(SearchConfig(min_thinking_tokens=10))
    first_seed = search.need.request.seed
    assert search.need.request.min_new_tokens == 10  # no end of thinking before the shortest z(0) kept
    records = search.on_generated([Generation(" too short", "stop", 3)])
    (rejected,) = records
    assert rejected.status == "rejected" and rejected.kind == "initial"
    assert rejected.note.startswith("z(0) has") and rejected.note.endswith("sampled again with a new seed (1 of 2)")
    assert isinstance(search.need, GenerationNeed) and search.need.request.seed != first_seed
    assert not search.done
    search.on_generated([Generation(" " + "\n\n".join(PARAS), "stop", 120)])
    assert isinstance(search.need, ScoringNeed)  # the second sample is searched
    search.on_scored(scored_as(1.5))
    assert search.best.revision_id not in {rejected.revision_id} and search.best.status == "scored"


def test_z0_retries_end_in_a_rejection_with_each_sample_stored_under_its_own_id():
    search, model = make_search(SearchConfig(min_thinking_tokens=10, initial_retries=2))
    model.generate = lambda requests: [[Generation(" one paragraph only, " * 10, "stop", 60)] for _ in requests]
    records = run(search, model)
    initial = [r for r in records if isinstance(r, RevisionRecord)]
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord)]
    assert len(initial) == 3 and len({r.revision_id for r in initial}) == 3
    assert all(r.status == "rejected" and "single segment" in r.note for r in initial)
    assert outcome.status == "rejected" and outcome.reason == "single_segment"
    none, _ = make_search(SearchConfig(min_thinking_tokens=10, initial_retries=0))
    none.on_generated([Generation(" one paragraph only, " * 10, "stop", 60)])
    assert none.done


def test_a_search_resumed_after_a_rejected_z0_draws_the_next_sample():
    search, _ = make_search()
    (rejected,) = search.on_generated([Generation(" too short", "stop", 3)])
    retry_seed = search.need.request.seed
    fresh, _ = make_search()
    resumed, records = ItemSearch.resume(fresh.item, fresh.config, fresh.query_prompt, fresh.count_tokens, [rejected])
    assert records == [] and resumed.need.request.seed == retry_seed and resumed._attempt == 1
    (again,) = resumed.on_generated([Generation(" too short", "stop", 3)])
    assert again.revision_id != rejected.revision_id  # a second stored row, not a clash with the first


def test_a_step_with_no_usable_rewrite_is_sampled_again_once_and_all_its_samples_stored():
    search = at_first_step()
    request = search.need.request
    assert request.min_new_tokens == 16 and request.max_copied_tokens == 8
    assert request.copy_source == search.segments[0]
    assert search.on_generated([Generation(" x", "eos", 1), Generation(" y", "eos", 1)]) == []
    assert isinstance(search.need, GenerationNeed) and search.need.request.seed != request.seed
    search.on_generated([Generation(" GOOD a new rewrite " + "x" * 30, "stop", 20), Generation(" z", "eos", 1)])
    assert isinstance(search.need, ScoringNeed) and len(search.need.requests) == 1
    records = [r for r in search.on_scored(scored_as(1.2)) if isinstance(r, RevisionRecord)]
    assert sorted(r.candidate_index for r in records) == [0, 1, 2, 3]
    assert len({r.revision_id for r in records}) == 4
    assert [r.status for r in sorted(records, key=lambda r: r.candidate_index)] == [
        "unparsable",
        "unparsable",
        "scored",
        "unparsable",
    ]


def test_a_step_still_unusable_after_its_retries_moves_on():
    search = at_first_step()
    search.on_generated([Generation(" x", "eos", 1)] * 2)
    records = search.on_generated([Generation(" y", "eos", 1)] * 2)
    assert [r.candidate_index for r in records if isinstance(r, RevisionRecord)] == [0, 1, 2, 3]
    assert search.step == 2  # the next segment's step
