"""Ingest: read records through declared mappings; every record becomes an example or a reject.

Stages, each plain Python: read (tasks/readers.py) -> map and clean (this module, with the
mapping from tasks/mappings.py) -> dedupe against this run and the store -> finish the new
examples with the models (token limit, category, reverse-engineered query) -> store. Every
record read also leaves one row in `source_records` saying where it went.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.ids import stable_id
from reer.tasks.categories import Taxonomy, assign_category, given_category, load_taxonomy, method_version
from reer.tasks.hygiene import normalize_text, script_language, too_long
from reer.tasks.mappings import (  # noqa: F401  (the field aliases are part of this module's interface)
    CATEGORY_FIELDS,
    QUERY_FIELDS,
    REFERENCE_FIELDS,
    Join,
    SourceMapping,
    mapping_for,
)
from reer.tasks.readers import Raw, is_text_file, read_raw
from reer.tasks.records import Example, Rejected

__all__ = [
    "Example",
    "Rejected",
    "Ingested",
    "normalize_text",
    "example_id",
    "read_source",
    "ingest_examples",
    "select_pending",
    "bundled_sample",
    "plan_ingest",
    "finish_examples",
]

QUERY_ROOM = 64  # tokens kept free for a query the generator still has to write


def example_id(query: str, reference: str) -> str:
    return stable_id("example", query, reference)


# -- mapping one record -------------------------------------------------------------------


def _pick(record: dict, names: tuple[str, ...] | None) -> object | None:
    for name in names or ():
        if name in record and record[name] is not None:
            return record[name]
    return None


def _text_field(kind: str, value: object, names: tuple[str, ...] | None) -> tuple[str | None, tuple[str, str] | None]:
    """(the text, None) or (None, (reason, detail)) for a query or reference field."""
    if value is None:
        return None, (f"missing_{kind}", f"no {kind} field (looked for {', '.join(names or ())})")
    if not isinstance(value, str):
        return None, (f"bad_{kind}", f"the {kind} is a {type(value).__name__}, not text")
    cleaned = normalize_text(value)
    if not cleaned:
        return None, (f"empty_{kind}", f"the {kind} is empty")
    return cleaned, None


def drop_placeholders(query: str, placeholders: tuple[str, ...]) -> str:
    """Remove template slots such as <SEED> together with the spaces around them."""
    for slot in placeholders:
        query = re.sub(r"[ \t]*" + re.escape(slot) + r"[ \t]*", " ", query)
    return query


@dataclass
class JoinIndex:
    """The sibling file of a joined source, indexed by its id field (None when it is absent)."""

    join: Join
    path: Path
    rows: dict[str, dict] | None

    def partner(self, record: dict) -> tuple[dict | None, str]:
        """The sibling record for `record`, or None and the reason there is none."""
        key = record.get(self.join.on)
        if self.rows is None:
            return None, f"{self.path.name} (joined on {self.join.on}) is not beside this file"
        found = self.rows.get(str(key))
        return found, "" if found else f"no record with {self.join.on} {key!r} in {self.path.name}"


def load_join(path: Path, join: Join) -> JoinIndex:
    """Index the sibling file of `path` by the join field; unreadable records are skipped there, not here."""
    sibling = join.sibling(path)
    if sibling == path or not sibling.exists():
        return JoinIndex(join, sibling, None)
    rows = {
        str(r.data[join.on]): r.data
        for r in read_raw(sibling)
        if isinstance(r, Raw) and isinstance(r.data, dict) and join.on in r.data
    }
    return JoinIndex(join, sibling, rows)


def to_example(
    raw: Raw, source: str, mapping: SourceMapping, taxonomy: Taxonomy, joined: JoinIndex | None = None
) -> Example | Rejected:
    """Map one parsed record onto an Example, or say precisely why not."""
    where, payload, record = raw.where, raw.payload, raw.data

    def reject(reason: str, detail: str) -> Rejected:
        return Rejected(source, where, reason, detail, payload)

    if not isinstance(record, dict):
        return reject("not_an_object", f"expected a JSON object, got {type(record).__name__}")
    values = {
        "query": _pick(record, mapping.query),
        "reference": _pick(record, mapping.reference),
        "category": _pick(record, mapping.category),
        "id": _pick(record, mapping.id),
    }
    missing_partner = ""
    if joined is not None:
        partner, missing_partner = joined.partner(record)
        for role, name in joined.join.fields.items():
            if partner is not None and partner.get(name) is not None:
                values[role] = partner[name]
    if values["reference"] is None and mapping.reference is None:  # a file of queries, its answers joined or none
        note = mapping.note or "this source holds queries without reference answers"
        return reject("no_reference", f"{note}; {missing_partner}" if missing_partner else note)
    query = ""
    if mapping.query is not None:
        raw_query = values["query"]
        if isinstance(raw_query, str):
            raw_query = drop_placeholders(raw_query, mapping.drop_placeholders)
        query, problem = _text_field("query", raw_query, mapping.query)
        if problem:
            return reject(*problem)
    reference, problem = _text_field("reference", values["reference"], mapping.reference)
    if problem:
        return reject(*problem)
    language = script_language(query or reference)
    if language is None:
        return reject(
            "unsupported_language",
            "the text is mostly in a script other than Latin or Chinese; reer's prompts are English and Chinese",
        )
    category, category_given, how = given_category(values["category"], taxonomy)
    source_id = values["id"] if values["id"] is not None else raw.key
    return Example(
        example_id=example_id(query, reference),
        query=query,
        reference=reference,
        source=source,
        source_record=where,
        category=category,
        language=language,
        source_id=None if source_id is None else str(source_id),
        category_given=category_given,
        category_source=how,
    )


def read_source(
    path: Path, override: SourceMapping | None = None, taxonomy: Taxonomy | None = None
) -> Iterator[Example | Rejected]:
    """Examples and rejects from one file or datasets folder; never raises for bad content."""
    path = Path(path)
    source = str(path)
    taxonomy = taxonomy or load_taxonomy()
    mapping = mapping_for(path, override, text=is_text_file(path))
    joined = load_join(path, mapping.join) if mapping.join and path.exists() else None
    seen = False
    for raw in read_raw(path):
        seen = True
        yield raw if isinstance(raw, Rejected) else to_example(raw, source, mapping, taxonomy, joined)
    if not seen:
        yield Rejected(source, "(file)", "empty_file", "the file holds no records")


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
    with store.transaction() as con:
        store.append(con, "examples", [{**e.__dict__, "run_id": run_id} for e in finished])
        store.append(con, "rejects", [{**r.__dict__, "run_id": run_id, "stage": "sourcing"} for r in rejects])
        store.append(con, "source_records", [{**s, "run_id": run_id} for s in plan.sightings])
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


@task(cache_policy=NO_CACHE)
def ingest_examples(
    store,
    run_id: str,
    paths: list[Path],
    limit: int | None = None,
    *,
    scorer=None,
    generator=None,
    override: SourceMapping | None = None,
    reserve: int | None = None,
) -> Ingested:
    """Read every file; store new examples, every reject and where each record went."""
    return ingest_files(
        store, run_id, paths, limit, scorer=scorer, generator=generator, override=override, reserve=reserve
    )


@task(cache_policy=NO_CACHE)
def select_pending(
    store, config, prompt_version: str, generator_model: str, scorer_model: str, limit: int | None = None
) -> Ingested:
    """Stored examples with no completed trajectory under this search configuration, prompts and models."""
    from reer.sql import read_sql

    frame = store.query(
        read_sql("queries/pending_examples"),
        config_hash=config.fingerprint(),
        prompt_version=prompt_version,
        generator_model=generator_model,
        scorer_model=scorer_model,
    )
    rows = frame.select(EXAMPLE_FIELDS).to_dicts()[: limit if limit is not None else None]
    return Ingested([Example(**row) for row in rows], 0, 0, {"pending": frame.height})
