"""bench/RESULTS.md from bench/results.json's figures, followed by bench/NOTES.md."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def render_markdown(r: dict) -> str:
    s, g, e = r["scoring"], r["generation"], r["end_to_end"]
    lines = [
        "# reer benchmark",
        "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['threads']} threads, torch {r['machine']['torch']}. "
        f"Model SmolLM2-135M-Instruct, bf16 unless noted. Written by `make bench`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| matmul peak bf16 / fp32 | {r['peak']['bf16_gflops']} / {r['peak']['fp32_gflops']} GFLOP/s |",
        f"| compute limit (bf16, context 512) | {r['peak']['compute_limit_tokens_per_second_bf16']} tokens/s |",
        f"| scoring: necessary tokens/s | {s['necessary_tokens_per_second']} ({100 * s['fraction_of_compute_limit']:.0f}% of the limit) |",
        f"| scoring: speed-up over one-by-one full recompute | {s['speedup_over_naive']}x ({s['necessary_tokens']} vs {s['full_recompute_tokens']} tokens computed) |",
        f"| scoring: max abs log-prob difference, fp32 | {s['max_abs_logprob_diff_fp32']:.2e} |",
        *[f"| generation, {k} concurrent (best of 3) | {v['tokens_per_second']} tokens/s |" for k, v in g.items()],
        f"| generation at REER's prompt lengths ({r['long_generation']['rows']} rows, prompts of {r['long_generation']['prompt_tokens_mean']} tokens) | "
        f"{r['long_generation']['lean']['tokens_per_second']} tokens/s; transformers' forward {r['long_generation']['transformers']['tokens_per_second']} tokens/s ({r['long_generation']['speedup']}x) |",
        f"| end to end, batched driver | {e['batched']['items_per_hour']} items/h ({e['batched']['generation_calls']} generation + {e['batched']['scoring_calls']} scoring calls, {e['batched']['generated_tokens']} generated, {e['batched']['computed_tokens']} computed tokens) |",
        f"| end to end, one item at a time (authors' pattern) | {e['one_at_a_time']['items_per_hour']} items/h ({e['one_at_a_time']['generation_calls']} generation + {e['one_at_a_time']['scoring_calls']} scoring calls, {e['one_at_a_time']['generated_tokens']} generated, {e['one_at_a_time']['computed_tokens']} computed tokens) |",
        f"| end to end, one item at a time on transformers' forward | {e['one_at_a_time_transformers']['items_per_hour']} items/h ({e['one_at_a_time_transformers']['generated_tokens']} generated tokens; {e['speedup_over_transformers_loop']}x slower than the batched driver) |",
        f"| end to end speed-up | {e['speedup']}x (same final scores: {e['same_final_scores']}; bf16 sums differ with batch shape, so sampled tokens can diverge) |",
        f"| peak memory | {r['peak_memory_mb']} MB |",
        "",
    ]
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    return "\n".join(lines)
