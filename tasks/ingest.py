"""Ingest: every record read becomes an example or a reject, and leaves a row saying where it went.

Stages, each plain Python: read and map one file (tasks/sources.py, with tasks/readers.py and
tasks/mappings.py) -> dedupe against this run and the store -> finish the new examples with the
models (token limit, category, reverse-engineered query) -> store. Every record read also leaves
one row in `source_records`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.tasks.categories import Taxonomy, assign_category, load_taxonomy, method_version
from reer.tasks.hygiene import too_long
from reer.tasks.mappings import SourceMapping
from reer.tasks.records import Example, Rejected
from reer.tasks.sources import read_source

QUERY_ROOM = 64  # tokens kept free for a query the generator still has to write


def bundled_sample() -> Path:
    """The sample shipped with reer: 10 short pairs in English and Chinese."""
    from importlib.resources import files

    return Path(str(files("reer").joinpath("data/sample.jsonl")))


# -- deduplication and the plan of a run ----------------------------------------------------


@dataclass
class Plan:
    """Where every record read goes: new examples to finish, known ones to reuse, and the rest."""

    new: list[Example] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # example ids already in the store, in reading order
    rejects: list[Rejected] = field(default_factory=list)
    sightings: list[dict] = field(default_factory=list)  # rows of source_records


def _sighting(record: Example | Rejected, status: str, example: str | None = None, reason: str | None = None) -> dict:
    return {
        "source": record.source,
        "source_record": record.source_record,
        "status": status,
        "example_id": example,
        "reason": reason,
    }


def plan_ingest(records: Iterable[Example | Rejected], known_ids: set[str], limit: int | None = None) -> Plan:
    """Sort records: rejected, duplicate of this run, already stored, new, or past the limit."""
    plan, taken = Plan(), set()
    for record in records:
        if isinstance(record, Rejected):
            plan.rejects.append(record)
            plan.sightings.append(_sighting(record, "rejected", record.example_id, record.reason))
        elif record.example_id in taken:
            plan.sightings.append(_sighting(record, "duplicate", record.example_id))
        elif limit is not None and len(taken) >= limit:
            plan.sightings.append(_sighting(record, "over_limit", record.example_id))
        else:
            taken.add(record.example_id)
            if record.example_id in known_ids:
                plan.known.append(record.example_id)
                plan.sightings.append(_sighting(record, "known", record.example_id))
            else:
                plan.new.append(record)
                plan.sightings.append(_sighting(record, "loaded", record.example_id))
    return plan


# -- finishing new examples with the models -----------------------------------------------


def _reject_example(example: Example, reason: str, detail: str) -> Rejected:
    return Rejected(example.source, example.source_record, reason, detail, None, example.example_id)


def check_lengths(examples: list[Example], scorer, budget: int) -> tuple[list[Example], list[Rejected]]:
    """Keep examples whose query and reference fit the scorer's context; measure them in its tokens."""
    kept, rejected = [], []
    for e in examples:
        room = budget - (QUERY_ROOM if e.needs_query else 0)
        tokens, over = too_long(e.query, e.reference, scorer.count_tokens, room)
        if over:
            rejected.append(
                _reject_example(
                    e,
                    "too_long",
                    f"query and reference take {tokens} scorer tokens; "
                    f"{room} fit beside the thinking in a {scorer.context_window}-token context",
                )
            )
        else:
            kept.append(replace(e, tokens=tokens))
    return kept, rejected


def finish_examples(
    examples: list[Example],
    scorer=None,
    generator=None,
    budget: int | None = None,
    taxonomy: Taxonomy | None = None,
    categorize: bool = True,
) -> tuple[list[Example], list[Rejected]]:
    """Token limits, categories and synthesized queries for new examples; what fails is rejected."""
    from reer.tasks.query_writing import write_queries

    taxonomy = taxonomy or load_taxonomy()
    rejected: list[Rejected] = []
    if scorer is not None and budget is not None:
        examples, rejected = check_lengths(examples, scorer, budget)
    if scorer is not None and categorize:
        method = method_version(taxonomy)
        examples = [assign_category(scorer, e, taxonomy, method) for e in examples]
    ready = [e for e in examples if not e.needs_query]
    waiting = [e for e in examples if e.needs_query]
    if waiting and generator is None:
        rejected += [
            _reject_example(e, "no_query", "a text without a request, and no generator model to write one")
            for e in waiting
        ]
        waiting = []
    for e, written in zip(waiting, write_queries(generator, waiting, taxonomy) if waiting else []):
        if written is None:
            rejected.append(
                _reject_example(e, "query_synthesis_failed", "the generator wrote no usable request for this text")
            )
        else:
            tokens = e.tokens + scorer.count_tokens(written.query) if scorer is not None and e.tokens else None
            ready.append(replace(written, tokens=tokens))
    return ready, rejected


# -- the store ------------------------------------------------------------------------------


EXAMPLE_FIELDS = tuple(f.name for f in fields(Example))


def stored_examples(store, ids: list[str]) -> dict[str, Example]:
    """Examples already in the store, by id."""
    if not ids:
        return {}
    frame = store.query(
        f"SELECT {', '.join(EXAMPLE_FIELDS)} FROM examples WHERE list_contains($ids, example_id)", ids=ids
    )
    return {row["example_id"]: Example(**row) for row in frame.to_dicts()}


def _notify(rejects: list[Rejected], examples: list[Example]) -> None:
    """One line per reject, and one per category kept as given (per file and name)."""
    from reer.console import notice

    for r in rejects:
        notice(r.line())
    unmapped = Counter((e.source, e.category_given) for e in examples if e.category_source == "given")
    for (source, given), n in unmapped.items():
        notice(
            f"note {source}: category {given!r} ({n} record{'s' if n != 1 else ''}) is not in reer's taxonomy; kept as given"
        )


@dataclass
class Ingested:
    """What a run takes in: examples to search, and counts for the summary."""

    examples: list[Example]
    rejected: int
    duplicates: int
    counts: dict[str, int] = field(default_factory=dict)


def ingest_files(
    store,
    run_id: str,
    paths: list[Path],
    limit: int | None = None,
    *,
    scorer=None,
    generator=None,
    override: SourceMapping | None = None,
    reserve: int | None = None,
    categorize: bool = True,
) -> Ingested:
    """Read, dedupe, finish and store; returns the examples of these files (new and already stored)."""
    taxonomy = load_taxonomy()
    records = [r for path in paths for r in read_source(Path(path), override, taxonomy)]
    candidates = [r.example_id for r in records if isinstance(r, Example)]
    known = stored_examples(store, candidates)
    plan = plan_ingest(records, set(known), limit)
    budget = scorer.context_window - reserve if scorer is not None and reserve is not None else None
    finished, failed = finish_examples(plan.new, scorer, generator, budget, taxonomy, categorize)
    _mark_failed(plan, failed)
    rejects = plan.rejects + failed
    _notify(rejects, finished)

    def store_all(con) -> None:
        store.append(con, "examples", [{**e.__dict__, "run_id": run_id} for e in finished])
        store.append(con, "rejects", [{**r.__dict__, "run_id": run_id, "stage": "sourcing"} for r in rejects])
        store.append(con, "source_records", [{**s, "run_id": run_id} for s in plan.sightings])

    store.atomically(store_all)
    by_id = {e.example_id: e for e in finished} | known
    taken = [by_id[s["example_id"]] for s in plan.sightings if s["status"] in ("loaded", "known")]
    counts = Counter(s["status"] for s in plan.sightings)
    return Ingested(taken, counts["rejected"], counts["duplicate"], dict(counts))


def _mark_failed(plan: Plan, failed: list[Rejected]) -> None:
    """A new example that failed a model stage is a rejected record, not a loaded one."""
    reasons = {r.example_id: r.reason for r in failed}
    for s in plan.sightings:
        reason = reasons.get(s["example_id"])
        if s["status"] == "loaded" and reason:
            s["status"], s["reason"] = "rejected", reason


# The stage as a Prefect task: every file read; new examples, every reject and where each record went stored.
ingest_examples = task(ingest_files, name="ingest_examples", cache_policy=NO_CACHE)


@task(cache_policy=NO_CACHE)
def select_pending(
    store, config, prompt_version: str, generator_fingerprint: str, scorer_fingerprint: str, limit: int | None = None
) -> Ingested:
    """Stored examples with no finished (completed or rejected) trajectory under this search configuration, prompts and models."""
    from reer.sql import read_sql

    frame = store.query(
        read_sql("queries/pending_examples"),
        config_hash=config.fingerprint(),
        prompt_version=prompt_version,
        generator_fingerprint=generator_fingerprint,
        scorer_fingerprint=scorer_fingerprint,
    )
    rows = frame.select(EXAMPLE_FIELDS).to_dicts()[: limit if limit is not None else None]
    return Ingested([Example(**row) for row in rows], 0, 0, {"pending": frame.height})
