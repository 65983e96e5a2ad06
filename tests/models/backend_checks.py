"""Checks shared by the vLLM backends' tests: the same inputs, the same reference, the same run."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import pytest

from reer.models.base import GenerationRequest, ScoreRequest
from reer.tasks.scoring import score_logprobs, scoring_context, split_reference
from tests.conftest import HOME, dict_rows

# As tests/flows/test_synthesize.py: small for 2 CPU cores, and z(0) can still pass min_thinking_tokens.
SEARCH = dict(max_initial_tokens=200, max_refine_tokens=64, max_steps=1, k=2, seed=1)


def score_cases(model) -> list[ScoreRequest]:
    """Chat-rendered contexts with shared prefixes, and one plain context, like the search sends."""
    head = model.render_chat([("user", "Write two lines about rain on a tin roof.")])
    thinking = "<think>\nI want the sound first, then the feeling of being dry inside.\n\n"
    return [
        ScoreRequest(
            head + thinking + "Maybe a child listening.\n</think>\n<answer>\nRain on tin.\n\n", "It drums me to sleep."
        ),
        ScoreRequest(
            head + thinking + "Or an old man who counts the drops.\n</think>\n<answer>\nRain on tin.\n\n",
            "It drums me to sleep.",
        ),
        ScoreRequest(
            head + thinking + "Short.\n</think>\n<answer>\nRain on tin.\n\n",
            "A longer target: it drums, and drums, and I sleep.",
        ),
        ScoreRequest("Completely different context", " with its own target"),
    ]


def assert_scores_match(model, reference, tolerance: float = 1e-3) -> None:
    """`model` scores every case token for token as the transformers fp32 `reference` does."""
    cases = score_cases(reference)
    expected = reference.score(cases)
    before = model.stats.scored_tokens
    got = model.score(cases)
    for want, have in zip(expected, got):
        assert len(have) == len(want)
        assert max(abs(a - b) for a, b in zip(have, want)) < tolerance
    assert model.stats.scored_tokens - before == sum(len(w) for w in expected)


def assert_generation_behaves(model) -> None:
    """n samples per request, reproducible by seed whatever shares the batch, stop strings cut, counts kept."""
    ask = GenerationRequest(messages=(("user", "Name a colour."),), n=2, max_new_tokens=12, seed=11)
    other = GenerationRequest(messages=(("user", "Describe the sea at night."),), n=3, max_new_tokens=12, seed=3)
    before = model.stats.generated_tokens
    alone = model.generate([ask])[0]
    both = model.generate([other, ask])
    assert [len(both[0]), len(both[1])] == [3, 2]
    assert [g.text for g in both[1]] == [g.text for g in alone]
    assert all(0 < g.tokens <= 12 and g.finish_reason in {"eos", "length"} for g in alone + both[0])
    assert any(g.finish_reason == "length" for g in alone + both[0])
    assert model.stats.generated_tokens - before == sum(g.tokens for g in alone + both[0] + both[1])
    counting = GenerationRequest(
        messages=(("user", "Count from one to ten in words, separated by commas."),),
        prefill="one, two,",
        temperature=0.0,
        max_new_tokens=40,
        stop=("five",),
    )
    (cut,) = model.generate([counting])[0]
    assert cut.finish_reason == "stop" and "five" not in cut.text and "four" in cut.text


def longest_shared_run(a: list[str], b: list[str]) -> int:
    """The longest run of words `a` and `b` share."""
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            n = 0
            while i + n < len(a) and j + n < len(b) and a[i + n] == b[j + n]:
                n += 1
            best = max(best, n)
    return best


def assert_guards_behave(model) -> None:
    """The k samples of a request are independent draws (temperature 2.0: vLLM allows no more); min_new_tokens holds back the end of the turn;
    the copy guard keeps a sample from handing its source back."""
    flat = GenerationRequest(
        messages=(("user", "Write anything."),), n=4, max_new_tokens=6, seed=5, temperature=2.0, top_p=1.0
    )
    assert len({g.text for g in model.generate([flat])[0]}) == 4
    ask = GenerationRequest(
        messages=(("user", "Answer with one word: what colour is the sky?"),), temperature=0.0, max_new_tokens=40
    )
    (short,) = model.generate([ask])[0]
    assert short.finish_reason == "eos" and short.tokens < 12
    (held,) = model.generate([replace(ask, min_new_tokens=12)])[0]
    assert held.tokens >= 12
    source = "The lighthouse keeper counts the ships at night and writes their names in a small blue book."
    copy = GenerationRequest(
        messages=(("user", f"Repeat this sentence exactly:\n{source}"),),
        prefill="The lighthouse keeper",
        temperature=0.0,
        max_new_tokens=30,
        stop=("\n",),
    )
    (guarded,) = model.generate([replace(copy, copy_source=source, max_copied_tokens=4)])[0]
    # vLLM's bad_words see only the generated tokens: the pre-filled three words may start a run
    assert longest_shared_run(("The lighthouse keeper" + guarded.text).split(), source.split()) <= 7


def run_options(tmp, **backends) -> dict:
    """synthesize() options for a small fp32 run in `tmp` with the given backend settings."""
    return {
        "db": str(tmp / "reer.duckdb"),
        "out": str(tmp / "out"),
        "dtype": "float32",
        "home": str(HOME),
        "search": SEARCH,
        "model_retries": 0,
        **backends,
    }


def assert_every_revision_stored(db: str, reference) -> None:
    """The run completed; every sampled candidate is a row; stored scores equal an fp32 full forward pass."""
    import torch

    con = duckdb.connect(db, read_only=True)
    try:
        (run,) = dict_rows(con, "SELECT * FROM run_overview")
        assert run["status"] == "completed"
        outcomes = dict_rows(con, "SELECT * FROM outcomes")
        revisions = dict_rows(con, "SELECT * FROM revisions")
        assert len(outcomes) == 2
        completed = [o for o in outcomes if o["status"] == "completed"]
        assert completed, "at least one real item must get through the search"
        for o in completed:
            mine = [r for r in revisions if r["trajectory_id"] == o["trajectory_id"]]
            # a rejected z(0) is sampled again (search.initial_retries): one is scored, any before it kept rejected
            initial = [r for r in mine if r["kind"] == "initial" and r["status"] != "rejected"]
            assert len(initial) == 1 and initial[0]["score"] is not None and initial[0]["accepted"]
            candidates = [r for r in mine if r["kind"] == "candidate"]
            # every sampled candidate is a row: k per step, k more where none was usable (search.refine_retries)
            per_step = [sum(1 for c in candidates if c["step"] == s) for s in {c["step"] for c in candidates}]
            assert len(per_step) == o["steps"] and all(n in (SEARCH["k"], 2 * SEARCH["k"]) for n in per_step)
            assert all((c["status"] == "scored") == (c["score"] is not None) for c in candidates)
            assert o["final_score"] <= o["initial_score"]
            assert min(r["score"] for r in mine if r["accepted"]) == pytest.approx(o["final_score"])
        scored = dict_rows(
            con,
            """
            SELECT v.thinking, v.score, x.query, x.reference
            FROM revisions v JOIN trajectories t USING (trajectory_id, run_id) JOIN examples x USING (example_id)
            WHERE v.score IS NOT NULL ORDER BY v.step LIMIT 3""",
        )
    finally:
        con.close()
    assert scored
    for r in scored:
        split = split_reference(r["reference"])
        context = reference.encode(scoring_context(reference.render_chat([("user", r["query"])]), r["thinking"], split))
        target = reference.encode(split.target)
        with torch.inference_mode():
            logits = reference.model(torch.tensor([context + target])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        per_token = [logprobs[len(context) - 1 + j, t].item() for j, t in enumerate(target)]
        assert r["score"] == pytest.approx(score_logprobs(per_token).score, abs=1e-3)
