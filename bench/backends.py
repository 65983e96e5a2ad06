"""Load time, scoring and generation throughput of one backend on the same small workload.

    .venv/bin/python -m bench.backends transformers
    .venv-vllm/bin/python -m bench.backends vllm
    .venv/bin/python -m reer.models.vllm_server --python .venv-vllm/bin/python -- \\
        .venv/bin/python -m bench.backends served          (the URL comes from REER_TEST_VLLM_URL)

`make bench-backends` runs all three. Each prints one JSON line; all run fp32, the exact
reference. Scoring counts the target tokens scored per second (what a run's summary
reports); generation counts sampled tokens per second, for one sequence and for a batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from reer.models.base import GenerationRequest, ScoreRequest
from reer.tasks.ingest import bundled_sample
from reer.tasks.scoring import scoring_context, split_reference

SCORE_REQUESTS = 16  # candidates scored in one call, as the search sends them
GEN_TOKENS = 64


def workload(model) -> tuple[list[ScoreRequest], GenerationRequest, list[GenerationRequest]]:
    """Scoring requests built like the search's, from the bundled sample; one and many sampled sequences."""
    items = [json.loads(line) for line in bundled_sample().read_text().splitlines() if line.strip()]
    scores, queries = [], []
    for i in range(SCORE_REQUESTS):
        item = items[i % len(items)]
        split = split_reference(item["reference"])
        thinking = f"Draft {i}: I open on one concrete image, keep the voice plain, and save the turn for the end.\n\n"
        context = scoring_context(model.render_chat([("user", item["query"])]), thinking * (1 + i % 3), split)
        scores.append(ScoreRequest(context, split.target))
        queries.append(item["query"])
    one = GenerationRequest(messages=(("user", queries[0]),), n=1, max_new_tokens=GEN_TOKENS, seed=1)
    many = [
        GenerationRequest(messages=(("user", q),), n=4, max_new_tokens=GEN_TOKENS, seed=i)
        for i, q in enumerate(queries[:4])
    ]
    return scores, one, many


def load(backend: str, url: str | None):
    from reer.models.loading import load_model
    from reer.settings import ModelSpec, VllmConfig

    options: dict = {"dtype": "float32", "backend": backend}
    if backend == "served":
        options.update(url=url or os.environ["REER_TEST_VLLM_URL"])
    if backend == "vllm":
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        options.update(vllm=VllmConfig(enforce_eager=True))  # vllm-cpu without Triton cannot compile
    return load_model(ModelSpec(**options))


def measure(backend: str, url: str | None) -> dict:
    started = time.perf_counter()
    model = load(backend, url)
    load_seconds = time.perf_counter() - started
    scores, one, many = workload(model)
    model.score(scores[:1])  # warm-up: first-call set-up is not throughput
    model.generate([GenerationRequest(messages=one.messages, max_new_tokens=4)])

    def timed(call):
        begin = time.perf_counter()
        result = call()
        return result, time.perf_counter() - begin

    logprobs, score_seconds = timed(lambda: model.score(scores))
    (single,), one_seconds = timed(lambda: model.generate([one]))
    batch, many_seconds = timed(lambda: model.generate(many))
    scored = sum(map(len, logprobs))
    return {
        "backend": backend,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_s": round(load_seconds, 1),
        "score_tok_per_s": round(scored / score_seconds, 1),
        "score_prompt_tok_per_s": round(
            sum(len(model.encode(r.context + r.target)) for r in scores) / score_seconds, 1
        ),
        "gen_1_seq_tok_per_s": round(sum(g.tokens for g in single) / one_seconds, 1),
        "gen_16_seq_tok_per_s": round(sum(g.tokens for gs in batch for g in gs) / many_seconds, 1),
        "scored_tokens": scored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["transformers", "vllm", "served"])
    parser.add_argument("--url", default=None, help="the served backend's server (default: REER_TEST_VLLM_URL)")
    args = parser.parse_args()
    print(json.dumps(measure(args.backend, args.url)), flush=True)


if __name__ == "__main__":
    main()
