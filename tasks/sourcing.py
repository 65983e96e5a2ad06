"""Sourcing: read (query, reference) records from files; every record becomes an example or a reject."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.ids import stable_id
from reer.tasks.context import detect_language

QUERY_FIELDS = ("query", "prompt", "instruction", "writing_prompt", "question")
REFERENCE_FIELDS = ("reference", "answer", "response", "reference_output", "output", "completion")
CATEGORY_FIELDS = ("category", "type", "genre")


@dataclass(frozen=True)
class Example:
    """A normalized (query, reference) pair and where it came from."""

    example_id: str
    query: str
    reference: str
    source: str
    source_record: str
    category: str | None
    language: str


@dataclass(frozen=True)
class Rejected:
    """A record that could not become an example, kept with its reason."""

    source: str
    source_record: str
    reason: str
    detail: str
    payload: str | None = None

    def line(self) -> str:
        """The one line a user sees."""
        return f"skipped {self.source} {self.source_record}: {self.detail}"


def normalize_text(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces on lines, no blank edges."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def example_id(query: str, reference: str) -> str:
    return stable_id("example", query, reference)


def _pick(record: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in record:
            return record[name]
    return None


def to_example(record: object, source: str, where: str, payload: str) -> Example | Rejected:
    """Map one parsed record onto an Example, or say precisely why not."""
    if not isinstance(record, dict):
        return Rejected(source, where, "not_an_object", f"expected a JSON object, got {type(record).__name__}", payload)
    query, reference = _pick(record, QUERY_FIELDS), _pick(record, REFERENCE_FIELDS)
    for kind, value, names in (("query", query, QUERY_FIELDS), ("reference", reference, REFERENCE_FIELDS)):
        if value is None:
            return Rejected(source, where, f"missing_{kind}", f"no {kind} field (looked for {', '.join(names)})", payload)
        if not isinstance(value, str):
            return Rejected(source, where, f"bad_{kind}", f"the {kind} is a {type(value).__name__}, not text", payload)
        if not value.strip():
            return Rejected(source, where, f"empty_{kind}", f"the {kind} is empty", payload)
    query, reference = normalize_text(query), normalize_text(reference)
    category = _pick(record, CATEGORY_FIELDS)
    return Example(
        example_id=example_id(query, reference),
        query=query,
        reference=reference,
        source=source,
        source_record=where,
        category=str(category) if category else None,
        language=detect_language(query),
    )


def read_source(path: Path) -> Iterator[Example | Rejected]:
    """Examples and rejects from a .jsonl or .json file; never raises for bad content."""
    source = str(path)
    if not path.exists():
        yield Rejected(source, "(file)", "missing_file", "the file does not exist")
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path, source)
    elif suffix == ".json":
        yield from _read_json(path, source)
    else:
        yield Rejected(source, "(file)", "unknown_format", f"unknown format {suffix or '(no suffix)'}: use .jsonl or .json")


def _read_jsonl(path: Path, source: str) -> Iterator[Example | Rejected]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield Rejected(source, where, "bad_encoding", f"not UTF-8 ({error.reason} at byte {error.start})", raw.decode("utf-8", "replace"))
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield Rejected(source, where, "malformed_json", f"malformed JSON ({error.msg} at column {error.colno})", line.rstrip("\n"))
                continue
            yield to_example(record, source, where, line.rstrip("\n"))


def _read_json(path: Path, source: str) -> Iterator[Example | Rejected]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        yield Rejected(source, "(file)", "bad_encoding", f"not UTF-8 ({error.reason} at byte {error.start})")
        return
    except json.JSONDecodeError as error:
        yield Rejected(source, "(file)", "malformed_json", f"malformed JSON ({error.msg} at line {error.lineno})")
        return
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else None
    if items is None:
        yield Rejected(source, "(file)", "not_a_collection", "expected a JSON list or object of records")
        return
    for key, record in items:
        yield to_example(record, source, f"record {key}", json.dumps(record, ensure_ascii=False))


def bundled_sample() -> Path:
    """The sample shipped with reer: 10 short pairs in English and Chinese."""
    from importlib.resources import files

    return Path(str(files("reer").joinpath("data/sample.jsonl")))


@dataclass
class Loaded:
    """What sourcing read: examples to search, and counts for the summary."""

    examples: list[Example]
    rejected: int
    duplicates: int


@task(cache_policy=NO_CACHE)
def load_examples(store, run_id: str, paths: list[Path], limit: int | None = None) -> Loaded:
    """Read every file; store new examples and every reject; print one line per reject."""
    from reer.console import notice

    examples: dict[str, Example] = {}
    rejects: list[Rejected] = []
    duplicates = 0
    for path in paths:
        for record in read_source(Path(path)):
            if isinstance(record, Rejected):
                rejects.append(record)
                notice(record.line())
            elif record.example_id in examples:
                duplicates += 1
            elif limit is None or len(examples) < limit:
                examples[record.example_id] = record
    with store.transaction() as con:
        store.append(con, "examples", [{**e.__dict__, "run_id": run_id} for e in examples.values()])
        store.append(con, "rejects", [{**r.__dict__, "run_id": run_id, "stage": "sourcing"} for r in rejects])
    return Loaded(list(examples.values()), len(rejects), duplicates)
