"""Requests over a model's context window, with the real model: the item that cannot fit ends
`context_overflow`, and the items batched with it go on.

The searches resume after a stored z(0), so the real model only writes one short rewrite.
"""

from __future__ import annotations

import pytest

from reer.settings import SearchConfig
from reer.tasks.driver import drive
from reer.tasks.records import OutcomeRecord, RevisionRecord
from reer.tasks.scoring import split_reference
from reer.tasks.search import ItemSearch, SearchItem
from reer.tasks.search_tasks import search_rejects

pytestmark = pytest.mark.model

SEARCH = SearchConfig(max_refine_tokens=16, max_steps=1, k=1, seed=3)
QUERY = "Write a short poem about the last train home, told by the train."
REFERENCE = (
    "I carry the tired ones after midnight, the nurse with her shoes in a bag, the cook who smells of onions.\n\n"
    "I do not hurry them. The rails hum under me like a long held note, and the windows show them their faces."
)
THINKING = "\n\n".join(
    [
        "I want the train to speak, and I want it to sound patient, never grand, like a worker at the end of a shift.",
        "The passengers should be named by what they carry home, shoes and smells, not by their names or their jobs.",
        "It should end on the sound of the rails, something that keeps going after the poem stops, plain and steady.",
    ]
)


def resumed(model, trajectory: str, query: str, reference: str) -> ItemSearch:
    """A search whose z(0) is stored and scored: its next need is the rewrite of segment 1."""
    item = SearchItem(trajectory, trajectory, query, split_reference(reference), reference, "en", 11)
    initial = RevisionRecord(
        f"{trajectory}-z0", trajectory, None, "initial", 0, None, None, None, THINKING, True, "scored", score=1.0
    )
    search, finished = ItemSearch.resume(
        item, SEARCH, model.render_chat([("user", query)]), model.count_tokens, [initial]
    )
    assert not finished
    return search


def refine_tokens(model, search: ItemSearch) -> int:
    """The search's refine request as the backend encodes it, with room for its new tokens."""
    return len(model.generation_prompt(search.need.request)) + search.need.request.max_new_tokens


def outcome_of(records, trajectory: str) -> OutcomeRecord:
    (outcome,) = [r for r in records if isinstance(r, OutcomeRecord) and r.trajectory_id == trajectory]
    return outcome


def test_a_prompt_over_the_real_window_is_refused_and_the_batch_goes_on(fp32_model):
    # Sent, a prompt past max_position_embeddings fails the whole generation call (IndexError).
    huge = QUERY + "\n\n" + "Keep every line plain. " * 1700
    searches = [resumed(fp32_model, "huge", huge, REFERENCE), resumed(fp32_model, "fits", QUERY, REFERENCE)]
    assert refine_tokens(fp32_model, searches[0]) > fp32_model.context_window >= refine_tokens(fp32_model, searches[1])
    records = []
    drive(searches, fp32_model, fp32_model, records.extend)
    outcome = outcome_of(records, "huge")
    assert (outcome.status, outcome.reason, outcome.steps) == ("rejected", "context_overflow", 0)
    assert outcome.note.endswith(f"the generator reads {fp32_model.context_window}")
    assert (outcome_of(records, "fits").status, outcome_of(records, "fits").reason) == ("completed", "pass_complete")
    (reject,) = search_rejects(records)
    assert (reject.trajectory_id, reject.reason, reject.detail) == ("huge", "context_overflow", outcome.note)


def test_a_refine_prompt_over_a_smaller_window_ends_only_its_item(fp32_model, monkeypatch):
    longer = "\n\n".join([REFERENCE] * 4)  # its refine prompt holds the reference: about 150 tokens more
    searches = [resumed(fp32_model, "long", QUERY, longer), resumed(fp32_model, "short", QUERY, REFERENCE)]
    long, short = (refine_tokens(fp32_model, s) for s in searches)
    window = (long + short) // 2
    monkeypatch.setattr(fp32_model, "context_window", window)  # monkeypatch restores it after the test
    records = []
    drive(searches, fp32_model, fp32_model, records.extend)
    outcome = outcome_of(records, "long")
    assert (outcome.status, outcome.reason, outcome.steps, outcome.final_revision_id) == (
        "rejected",
        "context_overflow",
        0,
        "long-z0",
    )
    assert outcome.note == (
        f"the rewrite of segment 1 needs {long} tokens (its prompt and 16 new ones); the generator reads {window}"
    )
    assert (outcome_of(records, "short").status, outcome_of(records, "short").reason) == ("completed", "pass_complete")
