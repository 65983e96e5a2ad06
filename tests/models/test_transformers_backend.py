"""The transformers backend with the real shipped model (fp32): scores and sampling."""

from dataclasses import replace

import pytest
import torch

from reer.models.base import GenerationRequest, ScoreRequest
from tests.models.backend_checks import longest_shared_run

pytestmark = pytest.mark.model


def full_recompute(model, request):
    """Plain reference: one forward pass over context+target, read each target token's log-probability."""
    context, target = model.encode(request.context), model.encode(request.target)
    with torch.inference_mode():
        logits = model.model(torch.tensor([context + target])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[len(context) - 1 + j, t].item() for j, t in enumerate(target)]


@pytest.mark.parametrize("forward", ["lean", "transformers"])
def test_prefix_shared_batched_scores_equal_a_full_recompute(fp32_model, forward, monkeypatch):
    if forward == "transformers":  # the path for models the lean Llama forward does not cover
        monkeypatch.setattr(fp32_model, "runner", None)
    head = fp32_model.render_chat([("user", "Write two lines about rain on a tin roof.")])
    thinking = "<think>\nI want the sound first, then the feeling of being dry inside.\n\n"
    requests = [
        ScoreRequest(
            head + thinking + "Maybe a child listening.\n</think>\n<answer>\nRain on tin.\n\n", "It drums me to sleep."
        ),
        ScoreRequest(
            head + thinking + "Or an old man who counts the drops, slower.\n</think>\n<answer>\nRain on tin.\n\n",
            "It drums me to sleep.",
        ),
        ScoreRequest(
            head + thinking + "Short.\n</think>\n<answer>\nRain on tin.\n\n",
            "A longer target: it drums, and drums, and I sleep.",
        ),
        ScoreRequest("Completely different context", " with its own target"),
    ]
    before = fp32_model.stats.computed_tokens  # the model is shared by the session: count this call only
    batched = fp32_model.score(requests)
    assert fp32_model.stats.computed_tokens - before < sum(
        len(fp32_model.encode(r.context)) + len(fp32_model.encode(r.target)) for r in requests
    )  # the shared prefix was computed once
    for request, got in zip(requests, batched):
        expected = full_recompute(fp32_model, request)
        assert len(got) == len(expected)
        assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-4


def test_samples_depend_on_their_seed_not_on_their_batch(fp32_model):
    ask = GenerationRequest(messages=(("user", "Name a colour."),), n=2, max_new_tokens=12, seed=11, temperature=0.8)
    other = GenerationRequest(
        messages=(("user", "Describe a long walk by the sea at night."),), n=3, max_new_tokens=12, seed=3
    )
    alone = fp32_model.generate([ask])[0]
    together = fp32_model.generate([other, ask])[1]
    assert [g.text for g in alone] == [g.text for g in together]
    assert all(g.tokens <= 12 and g.finish_reason in {"eos", "length", "stop"} for g in alone)


def test_generation_stops_at_a_stop_string_and_cuts_it(fp32_model):
    request = GenerationRequest(
        messages=(("user", "Count from one to ten in words, separated by commas."),),
        prefill="one, two,",
        temperature=0.0,
        max_new_tokens=40,
        stop=("five",),
    )
    (g,) = fp32_model.generate([request])[0]
    assert g.finish_reason == "stop" and "five" not in g.text and "four" in g.text


def test_the_repetition_penalty_spares_the_tokens_that_end_a_sample(fp32_model):
    # EOS is in every chat prompt and the stop string is named in this one: penalized as seen
    # tokens, they kept this greedy answer going to the token limit (measured before the exemption).
    request = GenerationRequest(
        messages=(("user", "Say the word yes, then stop. Write DONE when you are done."),),
        temperature=0.0,
        max_new_tokens=24,
        repetition_penalty=1.5,
        stop=("DONE",),
    )
    (g,) = fp32_model.generate([request])[0]
    assert g.finish_reason in ("eos", "stop") and g.tokens < 24


def test_the_k_samples_of_a_request_are_independent_draws(fp32_model):
    """Each sample has its own generator (seeded from the request's seed and its index, as vLLM gives
    child i seed + i): on a flat distribution the samples of one request all differ."""
    flat = GenerationRequest(
        messages=(("user", "Write anything."),), n=4, max_new_tokens=6, seed=5, temperature=5.0, top_p=1.0
    )
    texts = [g.text for g in fp32_model.generate([flat])[0]]
    assert len(set(texts)) == 4


def test_min_new_tokens_holds_back_the_end_of_turn_and_the_stop_string(fp32_model):
    ask = GenerationRequest(
        messages=(("user", "Answer with one word: what colour is the sky?"),), temperature=0.0, max_new_tokens=40
    )
    (short,) = fp32_model.generate([ask])[0]
    assert short.finish_reason == "eos" and short.tokens < 12
    (held,) = fp32_model.generate([replace(ask, min_new_tokens=12)])[0]
    assert held.tokens >= 12
    counting = GenerationRequest(
        messages=(("user", "Count from one to ten in words, separated by commas."),),
        prefill="one, two,",
        temperature=0.0,
        max_new_tokens=40,
        stop=("four",),
    )
    (early,) = fp32_model.generate([counting])[0]
    assert early.finish_reason == "stop" and early.tokens < 6
    (later,) = fp32_model.generate([replace(counting, min_new_tokens=10)])[0]
    assert later.tokens >= 10 and "four" not in later.text[: len(early.text) + 1]


def test_a_copy_guard_keeps_a_sample_from_repeating_its_source_at_length(fp32_model):
    source = "The lighthouse keeper counts the ships at night and writes their names in a small blue book."
    ask = GenerationRequest(
        messages=(("user", f"Repeat this sentence exactly:\n{source}"),),
        prefill="The lighthouse keeper",
        temperature=0.0,
        max_new_tokens=30,
        stop=("\n",),
    )
    (copy,) = fp32_model.generate([ask])[0]
    assert ("The lighthouse keeper" + copy.text).strip().startswith(source[:60])  # unguarded, it copies
    (guarded,) = fp32_model.generate([replace(ask, copy_source=source, max_copied_tokens=4)])[0]
    words = ("The lighthouse keeper" + guarded.text).split()
    assert longest_shared_run(words, source.split()) <= 4


def test_nucleus_sampling_draws_each_token_at_its_renormalized_probability():
    """_choose is exact: tokens outside the top-p nucleus never come, those inside at p / nucleus mass,
    whether the nucleus lies inside the partial top-k head or needs the full sort."""
    from reer.models.transformers_backend import TransformersModel

    probs = torch.tensor([0.05, 0.4, 0.3, 0.15, 0.1])  # top_p 0.8: nucleus {1, 2, 3}, mass 0.85
    logits = probs.log()[None].repeat(4000, 1)
    temperature, top_p = torch.ones((4000, 1)), torch.full((4000, 1), 0.8)
    expected = {1: 0.4 / 0.85, 2: 0.3 / 0.85, 3: 0.15 / 0.85}
    for head in (5, 2):  # 2: the head holds 0.7 < top_p, so every row falls back to the full sort
        generators = [torch.Generator().manual_seed(i) for i in range(4000)]
        picks = TransformersModel._choose(logits, temperature, top_p, generators, head=head)
        assert set(picks) == set(expected)
        for token, p in expected.items():
            assert abs(picks.count(token) / len(picks) - p) < 0.03, (head, token)
    greedy = TransformersModel._choose(logits[:3], torch.zeros((3, 1)), top_p[:3], generators[:3])
    assert greedy == [1, 1, 1]
