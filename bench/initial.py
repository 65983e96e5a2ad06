"""z(0) drafts under a few generation settings: how many close their thinking, loop, carry a cue.

    .venv/bin/python -m bench.initial [--items N] [--seeds S] [--variants default,long,...]

The quality checks keep a trajectory out of the training files when its z(0) was cut at the token
limit (`thinking_closed`), when its thinking repeats itself (`ngram_repetition`) or when it has no
reflection cue (`reflection_cues`). This drafts z(0) for the same real English pairs of
bench.search (each under S seeds) through the search's own first transition (ItemSearch: its
prompt, opener, guards, trimming and rejections), under each variant of the search settings, and
counts what those checks and the search would make of each draft. Writes bench/initial.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.search import real_pairs
from reer.models.loading import load_model
from reer.settings import QualityConfig, SearchConfig, Settings
from reer.tasks.quality import closed_thinking, cue_counts, ngram_repetition
from reer.tasks.records import OutcomeRecord, RevisionRecord
from reer.tasks.scoring import split_reference
from reer.tasks.search import ItemSearch, SearchItem

HERE = Path(__file__).parent

# Each variant is a change of the search settings that shape z(0).
VARIANTS: dict[str, dict] = {
    "default": {},
    "long": {"max_initial_tokens": 640},
    "no_penalty": {"repetition_penalty": 1.0},
    "no_penalty_long": {"repetition_penalty": 1.0, "max_initial_tokens": 640},
    "no_penalty_short_loops": {"repetition_penalty": 1.0, "max_repeated_tokens": 6},
}


def draft(examples, generator, scorer, config: SearchConfig, seeds: int) -> list[dict]:
    """One z(0) per (pair, seed), as the search's first transition makes and judges it."""
    searches = []
    for ex in examples:
        for seed in range(seeds):
            item = SearchItem(
                f"t-{ex.example_id}-{seed}",
                ex.example_id,
                ex.query,
                split_reference(ex.reference),
                ex.reference,
                ex.language,
                seed,
            )
            searches.append(ItemSearch(item, config.model_copy(update={"initial_retries": 0}), "", scorer.count_tokens))
    generations = generator.generate([s.need.request for s in searches])
    quality = QualityConfig()
    rows = []
    for search, (g,) in zip(searches, generations):
        records = search.on_generated([g])
        initial = next(r for r in records if isinstance(r, RevisionRecord)) if records else search._candidates[0]
        outcome = next((r for r in records if isinstance(r, OutcomeRecord)), None)
        rows.append(
            {
                "finish_reason": g.finish_reason,
                "generated_tokens": g.tokens,
                "rejected": outcome.reason if outcome else None,
                "closed": closed_thinking(g.finish_reason),
                "repetition": ngram_repetition(initial.thinking, quality.ngram),
                "cues": sum(cue_counts(initial.thinking, "en").values()),
            }
        )
    return rows


def figures(rows: list[dict]) -> dict:
    """Shares of the drafts that pass each z(0)-shaped check, and of those that pass all three."""
    quality = QualityConfig()
    n = len(rows)
    closed = [r["closed"] for r in rows]
    looped = [r["repetition"] > quality.max_ngram_repetition for r in rows]
    cued = [r["cues"] >= quality.min_reflection_cues for r in rows]
    kept = [r["rejected"] is None for r in rows]
    return {
        "drafts": n,
        "rejected_share": round(1 - sum(kept) / n, 3),
        "closed_share": round(sum(closed) / n, 3),
        "repetition_ok_share": round(1 - sum(looped) / n, 3),
        "cue_share": round(sum(cued) / n, 3),
        "all_three_share": round(
            sum(k and c and not lp and q for k, c, lp, q in zip(kept, closed, looped, cued)) / n, 3
        ),
        "mean_generated_tokens": round(sum(r["generated_tokens"] for r in rows) / n, 1),
        "mean_repetition": round(sum(r["repetition"] for r in rows) / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    settings = Settings()
    generator = load_model(settings.model_spec("generator"))
    scorer = load_model(settings.model_spec("scorer"))
    examples = real_pairs(args.items)
    out = HERE / "initial.json"
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update({"items": len(examples), "seeds": args.seeds})
    result.setdefault("variants", {})
    for name in args.variants.split(","):
        start = time.perf_counter()
        rows = draft(examples, generator, scorer, SearchConfig(**VARIANTS[name]), args.seeds)
        row = {"settings": VARIANTS[name], **figures(rows), "seconds": round(time.perf_counter() - start, 1)}
        result["variants"][name] = row
        print(name, json.dumps(row), flush=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
