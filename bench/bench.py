"""reer's speed benchmark: every figure is measured side by side with its baseline in one run.

    .venv/bin/python -m bench.bench [--quick]

Prints the figures and writes bench/results.json and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from bench.render import render_markdown
from reer.models.base import GenerationRequest, ModelStats, ScoreRequest
from reer.models.loading import load_model
from reer.settings import SearchConfig, Settings
from reer.tasks.driver import drive
from reer.tasks.ingest import bundled_sample
from reer.tasks.records import Example
from reer.tasks.scoring import split_reference
from reer.tasks.search import ItemSearch, SearchItem
from reer.tasks.sources import read_source

HERE = Path(__file__).parent


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 8) -> float:
    """Measured dense matrix-multiply rate in FLOP/s for `dtype` (best of a few runs)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_token(model, context: int) -> float:
    """Forward FLOPs of one token at a given context length (weights, attention; no LM head)."""
    cfg = model.model.config
    weights = sum(
        p.numel() for n, p in model.model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n
    )
    attention = 2 * 2 * cfg.num_hidden_layers * context * cfg.num_attention_heads * cfg.head_dim
    return 2 * weights + attention


def lm_head_flops(model) -> float:
    cfg = model.model.config
    return 2 * cfg.hidden_size * cfg.vocab_size


def full_recompute(model, request: ScoreRequest) -> list[float]:
    """The naive scorer: one full forward pass over context + target, logits at every position."""
    ids, start = model.score_prompt(request)
    context, target = ids[:start], ids[start:]
    with torch.inference_mode():
        logits = model.model(torch.tensor([context + target])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[len(context) - 1 + j, t].item() for j, t in enumerate(target)]


class NaiveModel:
    """The authors' request pattern: one request per candidate, one sample each, every score recomputed in full."""

    def __init__(self, model):
        self.inner, self.stats = model, ModelStats()
        self.model_id, self.context_window = model.model_id, model.context_window
        self.render_chat, self.count_tokens = model.render_chat, model.count_tokens
        self.request_tokens = model.request_tokens

    def generate(self, requests):
        out = []
        for request in requests:
            samples = []
            for s in range(request.n):  # one request per sample; the seed keeps sample s identical
                started = time.perf_counter()
                before = (self.inner.stats.generated_tokens, self.inner.stats.computed_tokens)
                (g,) = self._one_sample(request, s)
                self.stats.generation_calls += 1
                self.stats.generated_tokens += self.inner.stats.generated_tokens - before[0]
                self.stats.computed_tokens += self.inner.stats.computed_tokens - before[1]  # its prefill
                self.stats.generation_seconds += time.perf_counter() - started
                samples.append(g)
            out.append(samples)
        return out

    def _one_sample(self, request, s):
        prompt = self.inner.generation_prompt(request)
        return self.inner._sample([0], [(0, s)], [request], [prompt])

    def score(self, requests):
        out = []
        for request in requests:
            started = time.perf_counter()
            out.append(full_recompute(self.inner, request))
            self.stats.scoring_calls += 1
            self.stats.scored_tokens += len(out[-1])
            self.stats.computed_tokens += self.inner.count_tokens(request.context) + len(out[-1])
            self.stats.scoring_seconds += time.perf_counter() - started
        return out


def sample_examples(n: int):
    return [e for e in read_source(bundled_sample()) if isinstance(e, Example)][:n]


def scoring_requests(model, examples, k: int = 4):
    """Realistic candidate scorings: per item, k rewrites of its middle segment share the prefix x + z_<i."""
    requests = []
    for ex in examples:
        split = split_reference(ex.reference)
        head = model.render_chat([("user", ex.query)])
        paragraphs = [p for p in ex.reference.split("\n\n") if p.strip()]
        thinking = [f"I start by asking what the reader needs from this. {p[:200]}" for p in paragraphs]
        for c in range(k):
            z = thinking[:1] + [f"Candidate {c}: the middle should carry one image. {thinking[1][:150]}"] + thinking[2:]
            context = f"{head}<think>\n" + "\n\n".join(z) + "\n</think>\n<answer>\n" + split.context
            requests.append(ScoreRequest(context, split.target))
    return requests


def bench_scoring(settings, quick: bool) -> dict:
    examples = sample_examples(4 if quick else 8)
    exact = load_model(settings.model_spec("scorer").model_copy(update={"dtype": "float32"}))
    fast = load_model(settings.model_spec("scorer").model_copy(update={"dtype": "bfloat16"}))
    requests = scoring_requests(fast, examples)
    # Exactness, in fp32: batched prefix-shared scores against one-by-one full recomputes.
    batched = exact.score(requests)
    naive = [full_recompute(exact, r) for r in requests]
    max_diff = max(abs(a - b) for x, y in zip(batched, naive) for a, b in zip(x, y))
    # Speed, in bf16 (the default dtype).
    fast.score(requests[:2])  # warm-up
    before = fast.stats.computed_tokens
    start = time.perf_counter()
    fast.score(requests)
    batched_seconds = time.perf_counter() - start
    computed = fast.stats.computed_tokens - before
    start = time.perf_counter()
    for r in requests:
        full_recompute(fast, r)
    naive_seconds = time.perf_counter() - start
    scored = sum(len(x) for x in batched)
    contexts = [fast.count_tokens(r.context) for r in requests]
    full_tokens = sum(contexts) + scored
    avg_context = full_tokens / len(requests) / 2
    needed_flops = computed * flops_per_token(fast.model, int(avg_context)) + scored * lm_head_flops(fast.model)
    return {
        "requests": len(requests),
        "scored_tokens": scored,
        "necessary_tokens": computed,
        "full_recompute_tokens": full_tokens,
        "batched_seconds": round(batched_seconds, 3),
        "naive_seconds": round(naive_seconds, 3),
        "necessary_tokens_per_second": round(computed / batched_seconds, 1),
        "scored_tokens_per_second": round(scored / batched_seconds, 1),
        "speedup_over_naive": round(naive_seconds / batched_seconds, 2),
        "achieved_flops": needed_flops / batched_seconds,
        "max_abs_logprob_diff_fp32": max_diff,
    }


def bench_generation(settings, quick: bool) -> dict:
    model = load_model(settings.model_spec("generator").model_copy(update={"dtype": "bfloat16"}))
    tokens = 32 if quick else 64
    out = {}
    for concurrent in (1, 8, 32):
        requests = [
            GenerationRequest(
                messages=(("user", f"Write a short paragraph about harbour number {i}."),),
                n=1,
                temperature=0.8,
                top_p=0.85,
                max_new_tokens=tokens,
                seed=i,
            )
            for i in range(concurrent)
        ]
        seconds = float("inf")
        for _ in range(3):  # best of three: a few seconds each, and this machine's speed wanders
            before = model.stats.generated_tokens
            start = time.perf_counter()
            model.generate(requests)
            seconds = min(seconds, time.perf_counter() - start)
            made = model.stats.generated_tokens - before  # the same every time: the seeds fix the samples
        out[str(concurrent)] = {
            "tokens": made,
            "seconds": round(seconds, 2),
            "tokens_per_second": round(made / seconds, 1),
        }
    return out


def bench_long_generation(settings, quick: bool) -> dict:
    """Generation as REER asks for it: long prompts (query and reference), k=2 samples each, 32 rows in all;
    reer's lean Llama forward against transformers' own forward, same requests, same seeds."""
    from reer.models.transformers_backend import GenericDecoder

    model = load_model(settings.model_spec("generator").model_copy(update={"dtype": "bfloat16"}))
    examples = sample_examples(16)
    requests = [
        GenerationRequest(
            messages=(("user", f"{ex.query}\n\n{ex.reference}"),),
            n=2,
            temperature=0.8,
            top_p=0.85,
            max_new_tokens=32 if quick else 64,
            seed=i,
        )
        for i, ex in enumerate(examples)
    ]
    prompt_tokens = [model.count_tokens(r.messages[0][1]) for r in requests]
    out = {
        "requests": len(requests),
        "rows": 2 * len(requests),
        "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens)),
    }
    # Alternating, best of two each: this machine's speed drifts within a minute.
    for name, decoder in 2 * (
        ("lean", model._decoder),
        ("transformers", lambda rows, capacity: GenericDecoder(model.model)),
    ):
        before = model.stats.generated_tokens
        start = time.perf_counter()
        model._decoder = decoder
        try:
            model.generate(requests)
        finally:
            del model._decoder  # back to the class's choice
        seconds = time.perf_counter() - start
        made = model.stats.generated_tokens - before
        if name not in out or seconds < out[name]["seconds"]:
            out[name] = {"tokens": made, "seconds": round(seconds, 2), "tokens_per_second": round(made / seconds, 1)}
    out["speedup"] = round(out["transformers"]["seconds"] / out["lean"]["seconds"], 2)
    return out


def run_search(examples, model, config, batched: bool):
    searches = []
    for ex in examples:
        split = split_reference(ex.reference)
        item = SearchItem(f"t-{ex.example_id}", ex.example_id, ex.query, split, ex.reference, ex.language, 7)
        searches.append(ItemSearch(item, config, model.render_chat([("user", ex.query)]), model.count_tokens))
    records = []
    start = time.perf_counter()
    if batched:
        drive(searches, model, model, records.extend)
    else:
        for search in searches:  # one item at a time
            drive([search], model, model, records.extend)
    seconds = time.perf_counter() - start
    finals = sorted((r.trajectory_id, r.final_score) for r in records if type(r).__name__ == "OutcomeRecord")
    return seconds, finals


CALL_STATS = ("generation_calls", "scoring_calls", "generated_tokens", "computed_tokens")


def bench_end_to_end(settings, quick: bool) -> dict:
    """The batched driver against one item at a time in the authors' request pattern, twice: through
    reer's lean forward (what batching and sharing alone buy) and through transformers' own forward."""
    from reer.models.transformers_backend import GenericDecoder

    # 8 items: the batched driver fills 16 of its 32 rows with their k=2 rewrites; a real run has thousands.
    examples = sample_examples(3 if quick else 8)
    config = SearchConfig(max_steps=1 if quick else 2, max_initial_tokens=256, max_refine_tokens=96)
    fast = load_model(settings.model_spec("generator").model_copy(update={"dtype": "bfloat16"}))

    def figures(seconds: float, stats: dict) -> dict:
        return {"seconds": round(seconds, 1), "items_per_hour": round(3600 * len(examples) / seconds, 1), **stats}

    before = dict(fast.stats.__dict__)
    batched_seconds, batched_finals = run_search(examples, fast, config, batched=True)
    batched = figures(batched_seconds, {k: fast.stats.__dict__[k] - before[k] for k in CALL_STATS})
    naive = NaiveModel(fast)
    naive_seconds, naive_finals = run_search(examples, naive, config, batched=False)
    one_at_a_time = figures(naive_seconds, {k: naive.stats.__dict__[k] for k in CALL_STATS})
    plain = NaiveModel(fast)  # the same loop with transformers' forward for its generations too
    fast._decoder = lambda rows, capacity: GenericDecoder(fast.model)
    try:
        plain_seconds, _ = run_search(examples, plain, config, batched=False)
    finally:
        del fast._decoder
    return {
        "items": len(examples),
        "config": config.model_dump(),
        "batched": batched,
        "one_at_a_time": one_at_a_time,
        "one_at_a_time_transformers": figures(plain_seconds, {k: plain.stats.__dict__[k] for k in CALL_STATS}),
        "speedup": round(naive_seconds / batched_seconds, 2),
        "speedup_over_transformers_loop": round(plain_seconds / batched_seconds, 2),
        "same_final_scores": [round(a[1] or 0, 3) for a in batched_finals]
        == [round(b[1] or 0, 3) for b in naive_finals],
    }


def bench_peak(settings) -> tuple[dict, float]:
    """The machine's matmul peak in bf16 and fp32, and the compute limit it implies for the model."""
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    model = load_model(settings.model_spec("scorer").model_copy(update={"dtype": "bfloat16"}))
    per_token = flops_per_token(model.model, 512)
    print(
        f"matmul peak: bf16 {peak_bf16 / 1e9:.0f} GFLOP/s, fp32 {peak_fp32 / 1e9:.0f} GFLOP/s; "
        f"compute limit {peak_bf16 / per_token:.0f} tokens/s (bf16, context 512)",
        flush=True,
    )
    peak = {
        "bf16_gflops": round(peak_bf16 / 1e9, 1),
        "fp32_gflops": round(peak_fp32 / 1e9, 1),
        "flops_per_token_at_512": per_token,
        "compute_limit_tokens_per_second_bf16": round(peak_bf16 / per_token, 1),
    }
    return peak, per_token


def best_peak(peak: dict, per_token: float) -> float:
    """The bf16 peak measured again (after scoring): the limit is the best this machine does, and its speed drifts."""
    again = matmul_peak(torch.bfloat16)
    if again > peak["bf16_gflops"] * 1e9:
        peak.update(bf16_gflops=round(again / 1e9, 1), compute_limit_tokens_per_second_bf16=round(again / per_token, 1))
        print(
            f"matmul peak, measured again after scoring: bf16 {again / 1e9:.0f} GFLOP/s; "
            f"compute limit {again / per_token:.0f} tokens/s",
            flush=True,
        )
    return peak["bf16_gflops"] * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    args = parser.parse_args()
    settings = Settings()
    torch.set_num_threads(torch.get_num_threads())
    results: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
    }
    started = time.perf_counter()
    results["peak"], per_token = bench_peak(settings)
    scoring = bench_scoring(settings, args.quick)
    peak_bf16 = best_peak(results["peak"], per_token)
    scoring["fraction_of_compute_limit"] = round(scoring.pop("achieved_flops") / peak_bf16, 3)
    results["scoring"] = scoring
    print(
        f"scoring: {scoring['necessary_tokens_per_second']} necessary tokens/s = "
        f"{100 * scoring['fraction_of_compute_limit']:.0f}% of the limit; {scoring['speedup_over_naive']}x "
        f"over one-by-one full recompute; max |diff| {scoring['max_abs_logprob_diff_fp32']:.2e} (fp32)",
        flush=True,
    )
    results["generation"] = bench_generation(settings, args.quick)
    print(
        "generation: " + ", ".join(f"{k} seq {v['tokens_per_second']} tok/s" for k, v in results["generation"].items()),
        flush=True,
    )
    long = results["long_generation"] = bench_long_generation(settings, args.quick)
    print(
        f"generation at REER's prompt lengths ({long['rows']} rows, prompts of {long['prompt_tokens_mean']} tokens): "
        f"{long['lean']['tokens_per_second']} tok/s, transformers' forward {long['transformers']['tokens_per_second']} "
        f"tok/s = {long['speedup']}x",
        flush=True,
    )
    results["end_to_end"] = bench_end_to_end(settings, args.quick)
    e2e = results["end_to_end"]
    print(
        f"end to end: batched {e2e['batched']['items_per_hour']} items/h vs one at a time "
        f"{e2e['one_at_a_time']['items_per_hour']} items/h = {e2e['speedup']}x (on transformers' forward "
        f"{e2e['one_at_a_time_transformers']['items_per_hour']} items/h = {e2e['speedup_over_transformers_loop']}x)",
        flush=True,
    )
    results["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "RESULTS.md").write_text(render_markdown(results))
    print(
        f"peak memory {results['peak_memory_mb']} MB; wrote bench/results.json and bench/RESULTS.md "
        f"in {results['bench_seconds']} s"
    )


if __name__ == "__main__":
    main()
