"""The served backend over a pool of servers: least-busy routing, cool-downs, failover and one clear error.

Local HTTP servers stand in for `vllm serve`; no vLLM is needed, only the shipped model's tokenizer.
"""

from __future__ import annotations

import time

import pytest

from reer.models.base import GenerationRequest, ModelUnavailable
from tests.models.test_served_backend import ENGINE_DEAD_ANSWER, ScriptedServer, served

needs_tokenizer = pytest.mark.model  # the tokenizer comes from the shipped model's folder

COMPLETION = (200, {"choices": [{"index": 0, "text": "Once.", "finish_reason": "stop", "token_ids": [1, 2]}]})


def requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(messages=(("user", f"Tell story {i}."),), n=1, seed=i) for i in range(n)]


def servers(*options: dict) -> list[ScriptedServer]:
    return [ScriptedServer(o.pop("script", []), default=COMPLETION, **o) for o in options]


def close(*pool: ScriptedServer) -> None:
    for server in pool:
        server.close()


def pooled(pool: list[ScriptedServer], **options):
    """A served backend over `pool`, with test-sized timeouts unless `options` say otherwise."""
    return served(",".join(s.url for s in pool), **{"retries": 2, "backoff": 0.01, "cooldown": 10.0, **options})


def counts(model, server: ScriptedServer) -> dict:
    return model.stats.extra["endpoints"][server.url]


@needs_tokenizer
def test_requests_go_to_the_endpoint_with_the_fewest_in_flight():
    fast, slow = pool = servers({}, {"delay": 0.4})
    try:
        model = pooled(pool, concurrency=2)
        for _ in range(4):  # one at a time: equally idle endpoints take turns
            model.generate(requests(1))
        assert (fast.posts, slow.posts) == (2, 2)
        answers = model.generate(requests(12))  # at once: the slow endpoint holds its two while the fast one serves
        assert all(a[0].text == "Once." for a in answers)
        assert fast.posts + slow.posts == 16 and slow.posts <= 5  # 2 + at most 3 of the 12
        # Each endpoint's requests count its /v1/models at start too.
        assert counts(model, fast) == {"requests": fast.posts + 1, "failures": 0}
        assert counts(model, slow) == {"requests": slow.posts + 1, "failures": 0}
    finally:
        close(*pool)


@needs_tokenizer
def test_a_refused_endpoint_is_taken_out_and_its_requests_succeed_on_the_other_at_once():
    live, gone = pool = servers({}, {})
    model = pooled(pool, concurrency=2, backoff=5.0)  # a backoff would show in the time taken
    gone.close()  # its port now refuses connections
    try:
        started = time.perf_counter()
        answers = model.generate(requests(6))
        assert len(answers) == 6 and time.perf_counter() - started < 2.0
        refused = counts(model, gone)
        assert 1 <= refused["requests"] - 1 == refused["failures"] <= 2  # only those sent before it was taken out
        assert live.posts == 6 and model.stats.extra["retries"] == refused["failures"]
    finally:
        live.close()


@needs_tokenizer
def test_an_endpoint_answering_5xx_sits_out_its_cool_down_then_comes_back():
    flaky, steady = pool = servers({"script": [(500, {"error": "oops"})]}, {})
    try:
        model = pooled(pool, cooldown=0.3)
        model.generate(requests(1))  # to the flaky one first: 500, then at once to the steady one
        model.generate(requests(1))  # the flaky one is out: the steady one again
        assert (flaky.posts, steady.posts) == (1, 2)
        time.sleep(0.4)
        model.generate(requests(1))  # its cool-down is over: its turn again, and it answers
        assert (flaky.posts, steady.posts) == (2, 2)
        assert counts(model, flaky) == {"requests": 3, "failures": 1}  # with its /v1/models at start
    finally:
        close(*pool)


@needs_tokenizer
def test_a_dead_engine_sends_its_requests_to_another_endpoint():
    dying, steady = pool = servers({"script": [(500, ENGINE_DEAD_ANSWER)]}, {})
    try:
        model = pooled(pool)
        (answer,) = model.generate(requests(1))
        assert answer[0].text == "Once." and (dying.posts, steady.posts) == (1, 1)
    finally:
        close(*pool)


@needs_tokenizer
def test_when_every_endpoint_is_gone_one_line_names_each_and_its_last_error():
    pool = servers({}, {"script": [(503, {"error": "overloaded"})] * 10})
    model = pooled(pool, cooldown=0.01)
    pool[0].close()
    try:
        with pytest.raises(ModelUnavailable) as raised:
            model.generate(requests(2))
        message = str(raised.value)
        assert "\n" not in message and "none of the 2 model servers answered" in message
        assert f"{pool[0].url}: ConnectError" in message and f"{pool[1].url}: HTTP 503" in message
        assert model.stats.extra["failed_requests"] >= 1
    finally:
        pool[1].close()


@needs_tokenizer
def test_a_rejected_request_is_not_retried_on_any_endpoint():
    from reer.models.served import ServedRequestRejected

    rejecting, steady = pool = servers({"script": [(400, {"error": "prompt too long"})]}, {})
    try:
        model = pooled(pool)
        with pytest.raises(ServedRequestRejected, match="prompt too long"):
            model.generate(requests(1))
        assert (rejecting.posts, steady.posts) == (1, 0) and model.stats.extra["retries"] == 0
        assert counts(model, rejecting)["failures"] == 0  # the request was bad, not the server
    finally:
        close(*pool)


@needs_tokenizer
def test_endpoints_serving_different_models_are_refused_at_start_in_one_line():
    from reer.models.served import ServedRequestRejected

    entry = {"id": "SmolLM2-135M-Instruct", "root": "/models/SmolLM2-135M-Instruct", "max_model_len": 8192}
    pool = servers({"model": entry}, {"model": {**entry, "root": "/models/other-build"}})
    try:
        with pytest.raises(ServedRequestRejected) as raised:
            pooled(pool)
        message = str(raised.value)
        assert "\n" not in message and pool[1].url in message and "same model" in message
    finally:
        close(*pool)


@needs_tokenizer
def test_the_pool_fingerprint_and_window_are_what_every_endpoint_agrees_on():
    entry = {"id": "SmolLM2-135M-Instruct", "root": "/models/SmolLM2-135M-Instruct", "max_model_len": 8192}
    wide, also_wide, narrow = pool = servers(
        {"model": entry}, {"model": entry}, {"model": {**entry, "max_model_len": 4096}}
    )
    try:
        alone, pair, swapped = pooled([wide]), pooled([wide, also_wide]), pooled([also_wide, wide])
        assert alone.fingerprint == pair.fingerprint == swapped.fingerprint
        with_narrow = pooled(pool)
        assert with_narrow.context_window == 4096 and pooled([narrow]).fingerprint == with_narrow.fingerprint
    finally:
        close(*pool)


def test_settings_take_a_comma_separated_pool_and_name_a_malformed_url_in_one_line():
    from pydantic import ValidationError

    from reer.settings import Settings

    settings = Settings(backend="served", generator_url="http://a:8000, http://b:8000", scorer_url="http://c:8000")
    assert settings.generator_url == "http://a:8000,http://b:8000" and settings.scorer_url == "http://c:8000"
    assert settings.model_spec("generator").url == "http://a:8000,http://b:8000"
    with pytest.raises(ValidationError) as raised:
        Settings(scorer_url="http://a:8000,b:80x")
    (error,) = raised.value.errors()
    assert "\n" not in error["msg"] and "'b:80x' is not a server URL" in error["msg"]


@needs_tokenizer
def test_with_every_endpoint_out_a_request_waits_for_the_first_back_not_the_whole_backoff():
    pool = servers({"script": [(503, {"error": "busy"})]}, {"script": [(503, {"error": "busy"})]})
    try:
        model = pooled(pool, cooldown=0.2, backoff=5.0)
        started = time.perf_counter()
        (answer,) = model.generate(requests(1))  # 503 from one, at once 503 from the other, then the first back
        assert answer[0].text == "Once." and time.perf_counter() - started < 1.5
        assert [s.posts for s in pool] == [2, 1] and model.stats.extra["retries"] == 2
    finally:
        close(*pool)
