"""The one encoding every backend sends, and the window count taken from it (the real tokenizer)."""

import pytest

from reer.models.base import GenerationRequest, ScoreRequest

pytestmark = pytest.mark.model


def test_request_tokens_count_what_is_sent_and_encode_it_once(fp32_model, monkeypatch):
    generation = GenerationRequest((("user", "Name a colour."),), prefill="<think>\n", max_new_tokens=40)
    scoring = ScoreRequest("A context to score against", " and its target.")
    prompt, (ids, start) = fp32_model.generation_prompt(generation), fp32_model.score_prompt(scoring)
    encoded = []
    encode = fp32_model.encode
    monkeypatch.setattr(fp32_model, "encode", lambda text: encoded.append(text) or encode(text))
    assert fp32_model.request_tokens(generation) == len(prompt) + 40
    assert fp32_model.request_tokens(scoring) == len(ids) + 1  # vLLM generates one token to return log-probabilities
    assert fp32_model.generation_prompt(generation) == prompt and fp32_model.score_prompt(scoring) == (ids, start)
    assert len(encoded) == 3  # the prompt, the context, the target: counting them and sending them took one encoding
    assert fp32_model.score_prompt(scoring) == (ids, start) and len(encoded) == 5  # sent again: encoded afresh
