"""How much of what the generator samples the search can use, on fixed real pairs.

    .venv/bin/python -m bench.usable                 # 10 items: 5 HelloBench, 5 EQ-Bench
    .venv/bin/python -m bench.usable --items 6 --max-steps 4 --json out.json
    .venv/bin/python -m bench.usable --set max_copied_tokens=0 --set refine_retries=0   # one change off

Runs the real search (`drive`, the transformers backend, the shipped model, default search
settings) and counts, from the records it emits: how many z(0) were rejected and why, how many
candidate rewrites are usable (parsed and not a copy of their segment), how many were
unchanged or unparsable, and in how many steps the k samples were word for word the same.
Prints one table and, with --json, writes the figures and every unusable sample's reason.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from difflib import SequenceMatcher
from pathlib import Path

from bench import SHARED_DATA
from reer.settings import ModelSpec, SearchConfig

SOURCES = (
    ("hellobench_heuristic_text_generation.jsonl", 5),  # joined to the Claude 3.5 answers by id
    ("eqbench_creative_writing_prompts.json", 5),
)


def fixed_examples(count: int):
    """The first examples of each source, in file order: the same pairs every run."""
    from reer.tasks.records import Example
    from reer.tasks.sources import read_source

    picked = []
    share = max(1, count // len(SOURCES))
    for name, _ in SOURCES:
        taken = [e for e in read_source(SHARED_DATA / name) if isinstance(e, Example)][:share]
        picked.extend(taken)
    return picked[:count]


def run(count: int, config: SearchConfig, dump: Path | None = None) -> dict:
    from reer.models.loading import load_model
    from reer.tasks.driver import drive
    from reer.tasks.records import Rejected
    from reer.tasks.search import ItemSearch
    from reer.tasks.search_tasks import plan_search, trajectory_key

    model = load_model(ModelSpec())
    records, planned_rejects = [], Counter()
    searches = []
    for ex in fixed_examples(count):
        key = trajectory_key(ex.example_id, config, model.fingerprint, model.fingerprint)
        item = plan_search(ex, key, config, model.count_tokens, model.context_window)
        if isinstance(item, Rejected):
            planned_rejects[item.reason] += 1
            continue
        searches.append(ItemSearch(item, config, model.render_chat([("user", ex.query)]), model.count_tokens))
    started = time.perf_counter()
    drive(searches, model, model, records.extend)
    seconds = time.perf_counter() - started
    if dump:  # every record, for reading the samples themselves
        dump.write_text("".join(json.dumps({"type": type(r).__name__, **r.__dict__}) + "\n" for r in records))
    return summarize(records, planned_rejects, count, seconds, model.stats.generated_tokens)


def summarize(records, planned_rejects: Counter, count: int, seconds: float, generated: int) -> dict:
    from reer.tasks.records import OutcomeRecord, RevisionRecord
    from reer.tasks.segments import segment

    outcomes = [r for r in records if isinstance(r, OutcomeRecord)]
    revisions = [r for r in records if isinstance(r, RevisionRecord)]
    initial_rejects = Counter(o.reason for o in outcomes if o.status == "rejected" and o.initial_score is None)
    rejects = initial_rejects + planned_rejects
    candidates = [r for r in revisions if r.kind == "candidate"]
    status = Counter(r.status for r in candidates)
    unusable = [r for r in candidates if r.status in ("unparsable", "unchanged")]
    usable = len(candidates) - len(unusable)
    steps: dict[tuple[str, int], list[str]] = {}
    for r in candidates:
        steps.setdefault((r.trajectory_id, r.step), []).append(r.segment_text or "")
    identical = sum(1 for texts in steps.values() if len(texts) > 1 and len(set(texts)) == 1)
    # How close the usable rewrites stay to their segment: a guard that only swaps a word would show here.
    thinking = {r.revision_id: r.thinking for r in revisions}
    similarity = []
    for r in candidates:
        pieces = segment(thinking.get(r.parent_id, ""))
        if r.status not in ("unparsable", "unchanged") and r.segment_index < len(pieces):
            similarity.append(SequenceMatcher(None, pieces[r.segment_index], r.segment_text).ratio())
    z0_rejected = sum(initial_rejects.values())
    return {
        "items": count,
        "z0_rejected": z0_rejected,
        "z0_rejected_share": z0_rejected / max(1, count - sum(planned_rejects.values())),
        "rejects": dict(rejects),
        "candidates": len(candidates),
        "usable": usable,
        "usable_share": usable / max(1, len(candidates)),
        "status": dict(status),
        "steps": len(steps),
        "identical_k_steps": identical,
        "usable_near_copies": sum(1 for x in similarity if x >= 0.9),
        "usable_mean_similarity": sum(similarity) / max(1, len(similarity)),
        "accepted": sum(1 for r in candidates if r.accepted),
        "seconds": round(seconds, 1),
        "generated_tokens": generated,
        "unusable_reasons": dict(Counter(r.note for r in unusable)),
        "outcomes": dict(Counter(f"{o.status}:{o.reason}" for o in outcomes)),
    }


def summarize_dump(path: Path, count: int, max_steps: int) -> dict:
    from reer.tasks.records import OutcomeRecord, RevisionRecord

    records = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        kind = row.pop("type")
        record = (OutcomeRecord if kind == "OutcomeRecord" else RevisionRecord)(**row)
        if not (isinstance(record, RevisionRecord) and record.kind == "candidate" and record.step > max_steps):
            records.append(record)
    return summarize(records, Counter(), count, 0.0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=SearchConfig().max_steps)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a search setting")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--dump", type=Path, help="write every record here, one JSON line each")
    parser.add_argument("--from-dump", type=Path, help="summarize a dump written before instead of running")
    args = parser.parse_args()
    settings = dict(pair.split("=", 1) for pair in args.set)
    if args.from_dump:  # the same figures from stored records, over the steps up to --max-steps
        figures = summarize_dump(args.from_dump, args.items, args.max_steps)
    else:
        figures = run(args.items, SearchConfig(max_steps=args.max_steps, **settings), args.dump)
    width = max(map(len, figures))
    for name, value in figures.items():
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{name:<{width}}  {shown}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
