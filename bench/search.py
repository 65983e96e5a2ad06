"""Search strategies side by side on real pairs: does the search find signal, and at what cost in tokens?

    .venv/bin/python -m bench.search [--items N] [--strategies paper,wide,...]

Every strategy searches the same real (query, reference) pairs from ../shared/data with the shipped
model: the generator in bfloat16 as a default run has it, the scorer in float32, so every score below
is exact to float32's noise (about 3e-7 across batch shapes, bench/NOTES.md) and no verifier is needed.
The same seeds give every strategy the same z(0) drafts; what differs is what the search does with them.
Writes bench/search.json and bench/SEARCH.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench import SHARED_DATA
from reer.models.loading import load_model
from reer.settings import SearchConfig, Settings
from reer.tasks.controls import derangement, score_request
from reer.tasks.driver import drive
from reer.tasks.records import Example, OutcomeRecord, RevisionRecord
from reer.tasks.scoring import score_logprobs, split_reference
from reer.tasks.search import ItemSearch, SearchItem
from reer.tasks.sources import read_source

HERE = Path(__file__).parent
# Real pairs with human or model-written references, never the bundled sample.
SOURCES = ("hellobench_heuristic_text_generation_claude35_responses.jsonl", "eqbench_creative_writing_prompts.json")
REFERENCE_CHARS = 1500  # references cut at a paragraph end past this, to keep a CPU run to minutes

# Each strategy is a change of settings from the paper's single greedy pass with k = 2.
STRATEGIES: dict[str, dict] = {
    "paper": {},
    "wide": {"k": 4},  # the 4 samples share one prefill
    "two_pass": {"passes": 2},
    "impact": {"order": "impact"},
}


def real_pairs(count: int) -> list[Example]:
    """`count` English pairs, alternating between the sources, each reference cut to whole paragraphs."""
    per_source = []
    for name in SOURCES:
        path = SHARED_DATA / name
        if not path.exists():
            raise SystemExit(f"bench.search needs {path}: the real data beside the repository (shared/data)")
        examples = [e for e in read_source(path) if isinstance(e, Example) and e.language == "en"]
        per_source.append(sorted(examples, key=lambda e: e.example_id))
    chosen: list[Example] = []
    for i in range(max(map(len, per_source))):
        for examples in per_source:
            if i < len(examples) and len(chosen) < count:
                cut = cut_reference(examples[i].reference)
                if split_reference(cut) is not None:
                    chosen.append(Example(**{**examples[i].__dict__, "reference": cut}))
    return chosen


def cut_reference(reference: str) -> str:
    kept: list[str] = []
    for paragraph in (p for p in reference.split("\n\n") if p.strip()):
        kept.append(paragraph)
        if sum(map(len, kept)) >= REFERENCE_CHARS:
            break
    return "\n\n".join(kept)


def run_strategy(examples, generator, scorer, config: SearchConfig) -> tuple[list, list, dict, float]:
    """Search every example under `config`; its records, the token counts it spent, and its wall time."""
    searches = []
    for ex in examples:
        item = SearchItem(
            f"t-{ex.example_id}", ex.example_id, ex.query, split_reference(ex.reference), ex.reference, ex.language, 7
        )
        prompt = scorer.render_chat([("user", ex.query)])
        searches.append(ItemSearch(item, config, prompt, scorer.count_tokens))
    before = (generator.stats.generated_tokens, scorer.stats.scored_tokens)
    records: list = []
    start = time.perf_counter()
    drive(
        searches,
        generator,
        scorer,
        records.extend,
        generation_rows=32,
        on_batch=lambda done, total: print(f"  {config_label(config)}: {done}/{total} items", flush=True),
    )
    seconds = time.perf_counter() - start
    spent = {
        "generated": generator.stats.generated_tokens - before[0],
        "scored": scorer.stats.scored_tokens - before[1],
    }
    return searches, records, spent, seconds


def config_label(config: SearchConfig) -> str:
    return f"k={config.k} passes={config.passes} order={config.order}"


def controls(searches, scorer, clip_min: float) -> dict[str, dict]:
    """z*'s float32 score against the answer with no thinking and with another item's z*, as tasks/controls.py
    pairs them (sorted by trajectory id, each reads the next one's)."""
    done = {s.item.trajectory_id: s for s in searches if s.best is not None}
    donors = derangement(list(done))
    wanted = []
    for tid in done:
        wanted.append((tid, "none", ""))
        if tid in donors:
            wanted.append((tid, "other", done[donors[tid]].best.thinking))
    requests = [score_request(done[tid].query_prompt, done[tid].item.reference, z) for tid, _, z in wanted]
    out: dict[str, dict] = {tid: {} for tid in done}
    for (tid, kind, _), lps in zip(wanted, scorer.score(requests) if requests else []):
        out[tid][kind] = score_logprobs(lps, clip_min).score
    return out


def figures(searches, records, spent, seconds, control_scores, margin: float) -> dict:
    """What one strategy achieved on the items, and what it cost."""
    revisions = [r for r in records if isinstance(r, RevisionRecord)]
    outcomes = {r.trajectory_id: r for r in records if isinstance(r, OutcomeRecord)}
    searched = [s for s in searches if s.best is not None]
    candidates = [r for r in revisions if r.kind == "candidate"]
    usable = [r for r in candidates if r.status not in ("unparsable", "unchanged")]
    drops, beats_z0, beats_none, beats_other, beats_both, gains, specificity = [], 0, 0, 0, 0, [], []
    for s in searched:
        initial, final = s.initial_score, s.best.score
        drops.append((initial - final) / initial)
        beats_z0 += initial - final > margin
        c = control_scores.get(s.item.trajectory_id, {})
        if "none" in c:
            gains.append(c["none"] - final)
            beats_none += gains[-1] > margin
        if "other" in c:
            specificity.append(c["other"] - final)
            beats_other += specificity[-1] > margin
        beats_both += c.get("none", 0) - final > margin and c.get("other", 0) - final > margin
    n, items = len(searched), len(searches)

    def share(count: int) -> float | None:
        return round(count / n, 3) if n else None

    reasons: dict[str, int] = {}
    for o in outcomes.values():
        reasons[o.reason] = reasons.get(o.reason, 0) + 1
    return {
        "items": items,
        "searched": n,
        "z0_rejected_share": round((items - n) / items, 3),
        "outcome_reasons": reasons,
        "candidates": len(candidates),
        "usable_candidate_share": round(len(usable) / len(candidates), 3) if candidates else None,
        "accepted_edits": sum(o.accepted_edits for o in outcomes.values()),
        "beats_z0_share": share(beats_z0),
        "median_relative_drop": round(statistics.median(drops), 6) if drops else None,
        "mean_relative_drop": round(statistics.fmean(drops), 6) if drops else None,
        "mean_gain_over_no_thinking": round(statistics.fmean(gains), 5) if gains else None,
        "beats_no_thinking_share": share(beats_none),
        "mean_specificity": round(statistics.fmean(specificity), 5) if specificity else None,
        "beats_other_thinking_share": share(beats_other),
        "beats_controls_share": share(beats_both),
        "generated_tokens_per_item": round(spent["generated"] / items, 1),
        "scored_tokens_per_item": round(spent["scored"] / items, 1),
        "seconds": round(seconds, 1),
    }


def render(result: dict) -> str:
    rows = result["strategies"]
    columns = [
        ("z(0) rejected", "z0_rejected_share", "{:.0%}"),
        ("usable candidates", "usable_candidate_share", "{:.0%}"),
        ("beats z(0)", "beats_z0_share", "{:.0%}"),
        ("median drop", "median_relative_drop", "{:.3%}"),
        ("gain over no thinking", "mean_gain_over_no_thinking", "{:+.4f}"),
        ("beats no thinking", "beats_no_thinking_share", "{:.0%}"),
        ("specificity", "mean_specificity", "{:+.4f}"),
        ("beats both controls", "beats_controls_share", "{:.0%}"),
        ("generated tokens/item", "generated_tokens_per_item", "{:.0f}"),
        ("scored tokens/item", "scored_tokens_per_item", "{:.0f}"),
        ("seconds", "seconds", "{:.0f}"),
    ]

    def cell(value, fmt):
        return "-" if value is None else fmt.format(value)

    lines = [
        "# Search strategies (`make bench-search`)",
        "",
        f"{result['items']} real pairs from ../shared/data ({', '.join(SOURCES)}; references cut to whole "
        f"paragraphs past {REFERENCE_CHARS} characters), SmolLM2-135M-Instruct: generator bfloat16, scorer "
        f'float32; at most {result["max_steps"]} segments refined per pass. "Beats" means by more than {result["margin"]:g} nats (float32\'s noise is about 3e-7). '
        "Shares are of the searched items (z(0) accepted).",
        "",
        "| strategy | " + " | ".join(c[0] for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(r[key], fmt) for _, key, fmt in columns) + " |")
    missing = [name for name in STRATEGIES if name not in rows]
    if missing:
        lines += ["", f"Not measured in this run: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--max-steps", type=int, default=4, help="segments refined per pass (the paper: 10)")
    args = parser.parse_args()
    settings = Settings()
    generator = load_model(settings.model_spec("generator").model_copy(update={"dtype": "bfloat16"}))
    scorer = load_model(settings.model_spec("scorer").model_copy(update={"dtype": "float32"}))
    examples = real_pairs(args.items)
    base = SearchConfig(max_steps=args.max_steps)
    result = {"items": len(examples), "max_steps": base.max_steps, "margin": base.accept_margin, "strategies": {}}
    for name in args.strategies.split(","):
        config = base.model_copy(update=STRATEGIES[name])
        searches, records, spent, seconds = run_strategy(examples, generator, scorer, config)
        row = figures(
            searches, records, spent, seconds, controls(searches, scorer, config.clip_min), base.accept_margin
        )
        result["strategies"][name] = {"settings": STRATEGIES[name], **row}
        print(name, json.dumps(row), flush=True)
        write(result)  # after every strategy: an hour-long run cut short keeps what it measured


def write(result: dict) -> None:
    """bench/search.json (with the default strategy's headline figures) and bench/SEARCH.md."""
    paper = result["strategies"].get("paper")
    if paper:
        keys = ("z0_rejected_share", "usable_candidate_share", "beats_z0_share", "beats_controls_share")
        result["default"] = {"strategy": "paper", **{k: paper[k] for k in keys}}
    (HERE / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "SEARCH.md").write_text(render(result))


if __name__ == "__main__":
    main()
