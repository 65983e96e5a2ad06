"""Acceptances with the real model scoring in bf16: each one holds under a float32 recompute.

bf16 differences between candidates are often smaller than bf16's own error on a score, so the
search verifies every bf16 win in float32 before it accepts it (tasks/search.py). Here the
shipped model scores in bf16 on two real items, and every stored acceptance is checked against
`fp32_model` scoring the candidate and its parent together.
"""

from __future__ import annotations

import json

import pytest

from reer.models.base import ScoreRequest
from reer.settings import ModelSpec, SearchConfig
from reer.tasks.driver import drive
from reer.tasks.scoring import score_logprobs, scoring_context, split_reference
from reer.tasks.search import ItemSearch, SearchItem
from reer.tasks.search_tasks import store_sink
from tests.conftest import HOME, short_eqbench_items

pytestmark = pytest.mark.model

SEARCH = SearchConfig(max_initial_tokens=200, max_refine_tokens=64, max_steps=3, k=2, seed=1)


@pytest.fixture(scope="module")
def verified_store(tmp_path_factory, fp32_model):
    from reer.models.loading import load_model
    from reer.store import Store

    tmp = tmp_path_factory.mktemp("verified")
    bf16 = load_model(ModelSpec(dtype="bfloat16", home=HOME))
    rows = [json.loads(line) for line in short_eqbench_items(tmp).read_text().splitlines()]
    searches = []
    for n, row in enumerate(rows):
        item = SearchItem(
            f"t{n}", row["id"], row["query"], split_reference(row["reference"]), row["reference"], "en", n
        )
        query_prompt = bf16.render_chat([("user", row["query"])])
        searches.append(ItemSearch(item, SEARCH, query_prompt, bf16.count_tokens, verifying=True))
    store = Store(tmp / "reer.duckdb")
    try:
        drive(searches, bf16, bf16, store_sink(store, "run-1"), verifier=fp32_model)
        revisions = store.query("SELECT * FROM revisions ORDER BY trajectory_id, step, candidate_index").to_dicts()
        outcomes = store.query("SELECT * FROM outcomes").to_dicts()
    finally:
        store.close()
    return {f"t{n}": row for n, row in enumerate(rows)}, revisions, outcomes


def fp32_scores(model, query: str, reference: str, thinkings: list[str]) -> list[float]:
    """The float32 scores of `thinkings` for one item, all in one call."""
    split = split_reference(reference)
    prompt = model.render_chat([("user", query)])
    requests = [ScoreRequest(scoring_context(prompt, t, split), split.target) for t in thinkings]
    return [score_logprobs(lps, SEARCH.clip_min).score for lps in model.score(requests)]


def test_every_stored_acceptance_holds_under_a_float32_recompute(verified_store, fp32_model):
    example, revisions, outcomes = verified_store
    by_id = {r["revision_id"]: r for r in revisions}
    verified = [r for r in revisions if r["verified_score"] is not None]
    accepted = [r for r in revisions if r["kind"] == "candidate" and r["accepted"]]
    assert [r for r in verified if r["kind"] == "candidate"], "no bf16 win was verified: the test checked nothing"
    for r in accepted:
        parent = by_id[r["parent_id"]]
        item = example[r["trajectory_id"]]
        mine, theirs = fp32_scores(fp32_model, item["query"], item["reference"], [r["thinking"], parent["thinking"]])
        assert mine < theirs, (r["revision_id"], mine, theirs)
    for r in verified:  # z(0) and every verified winner, accepted or refused
        item = example[r["trajectory_id"]]
        (recomputed,) = fp32_scores(fp32_model, item["query"], item["reference"], [r["thinking"]])
        assert r["verified_score"] == pytest.approx(recomputed, abs=1e-4)
    refused = [r for r in verified if r["kind"] == "candidate" and not r["accepted"]]
    assert all(r["note"].startswith("not accepted: ") and "in float32" in r["note"] for r in refused)
    for o in outcomes:
        if o["status"] == "completed":
            assert o["final_verified_score"] <= o["initial_verified_score"]
