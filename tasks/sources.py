"""One source file into examples or rejects: its records read, mapped by its declared mapping, cleaned.

A record's query and reference come from the mapping's fields (or a join with a sibling file),
are normalized (tasks/hygiene.py), get a language and a category given by the source, and an id
that hashes the normalized pair; anything unusable becomes a Rejected with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reer.ids import stable_id
from reer.tasks.categories import Taxonomy, given_category, load_taxonomy
from reer.tasks.hygiene import normalize_text, script_language
from reer.tasks.mappings import Join, SourceMapping, mapping_for
from reer.tasks.readers import Raw, is_text_file, read_raw
from reer.tasks.records import Example, Rejected


def example_id(query: str, reference: str) -> str:
    return stable_id("example", query, reference)


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


def _category_text(value: object) -> str | None:
    """A given category normalized like the text (no bidi or control characters), on one line."""
    return None if value is None else " ".join(normalize_text(str(value)).split())


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
    category, category_given, how = given_category(_category_text(values["category"]), taxonomy)
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
