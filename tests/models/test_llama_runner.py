"""The lean Llama forward computes what transformers computes: logits, and whole generations."""

import pytest
import torch

from reer.models.base import GenerationRequest
from reer.models.batching import left_padded
from reer.models.llama_runner import LlamaRunner, supports
from reer.models.transformers_backend import GenericDecoder

pytestmark = pytest.mark.model


def left_padded_texts(model, texts):
    return left_padded([model.encode(t) for t in texts], model.pad_id)


def test_prefill_and_decode_logits_equal_the_transformers_forward(fp32_model):
    assert supports(fp32_model.model)
    runner = LlamaRunner(fp32_model.model)
    ids, valid, positions = left_padded_texts(
        fp32_model, ["A cat.", "Write a poem about the sea and the ships that sail at night."]
    )
    cache = runner.new_cache(2, ids.shape[1] + 4)
    with torch.inference_mode():
        hidden = runner.forward(ids, positions, cache, valid)
        reference = fp32_model.model(input_ids=ids, attention_mask=valid.long(), position_ids=positions).logits
        for r in range(2):  # every real position, not only the last
            real = valid[r]
            assert (fp32_model.model.lm_head(hidden[r, real]) - reference[r, real]).abs().max() < 1e-4
        # Two decode steps appended in place equal a full forward over the longer sequences.
        for _ in range(2):
            token = fp32_model.model.lm_head(hidden[:, -1]).argmax(-1)
            positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
            hidden = runner.forward(token[:, None], positions[:, -1:], cache, torch.ones((2, 1), dtype=torch.bool))
            ids, valid = (
                torch.cat([ids, token[:, None]], 1),
                torch.cat([valid, torch.ones((2, 1), dtype=torch.bool)], 1),
            )
        reference = fp32_model.model(input_ids=ids, attention_mask=valid.long(), position_ids=positions).logits[:, -1]
        assert (fp32_model.model.lm_head(hidden[:, -1]) - reference).abs().max() < 1e-4


def test_a_selected_cache_keeps_its_rows(fp32_model):
    runner = LlamaRunner(fp32_model.model)
    ids, valid, positions = left_padded_texts(fp32_model, ["One.", "Two words.", "And three words here."])
    cache = runner.new_cache(3, ids.shape[1] + 2)
    runner.forward(ids, positions, cache, valid)
    picked = cache.select(torch.tensor([2, 2, 0]))
    assert picked.length == cache.length and picked.keys.shape[1] == 3
    n = cache.length
    assert torch.equal(picked.keys[:, 0, :, :n], cache.keys[:, 2, :, :n])
    assert torch.equal(picked.values[:, 2, :, :n], cache.values[:, 0, :, :n])
    assert torch.equal(picked.valid[1], cache.valid[2])


def test_generations_equal_those_of_the_transformers_forward(fp32_model, monkeypatch):
    requests = [
        GenerationRequest(messages=(("user", "Name three rivers."),), temperature=0.0, max_new_tokens=16),
        GenerationRequest(
            messages=(("user", "Describe a quiet harbour at dawn in two sentences."),),
            n=3,
            temperature=0.8,
            top_p=0.85,
            max_new_tokens=24,
            seed=5,
        ),
        GenerationRequest(
            messages=(("user", "Count to five."),), prefill="one,", temperature=0.0, max_new_tokens=20, stop=("four",)
        ),
    ]
    lean = fp32_model.generate(requests)
    monkeypatch.setattr(fp32_model, "_decoder", lambda rows, capacity: GenericDecoder(fp32_model.model))
    generic = fp32_model.generate(requests)
    assert [[(g.text, g.finish_reason, g.tokens) for g in r] for r in lean] == [
        [(g.text, g.finish_reason, g.tokens) for g in r] for r in generic
    ]
    assert len({g.text for g in lean[1]}) > 1  # the three samples differ: each follows its own seed
