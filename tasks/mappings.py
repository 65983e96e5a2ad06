"""Declared mappings: which fields of a source are the query, the reference, the category and the id."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path

ROLES = ("query", "reference", "category", "id")

# Field names tried in order when a file matches no declared source.
QUERY_FIELDS = ("query", "prompt", "instruction", "writing_prompt", "question")
REFERENCE_FIELDS = ("reference", "answer", "response", "reference_output", "output", "completion")
CATEGORY_FIELDS = ("category", "type", "genre")
ID_FIELDS = ("id", "uid", "key")
TEXT_FIELDS = ("text",)  # what the plain-text reader names the whole file


@dataclass(frozen=True)
class Join:
    """Fields taken from a sibling file in the same folder, matched on a shared id field.

    The sibling's name is this file's name with `replace[0]` replaced by `replace[1]`, so
    one declaration serves every file of a family (e.g. all HelloBench subsets).
    """

    replace: tuple[str, str]
    on: str
    fields: dict[str, str]  # role -> the sibling's field; these win over the file's own

    def sibling(self, path: Path) -> Path:
        """The path of the file this one joins with."""
        return path.with_name(path.name.replace(*self.replace))


@dataclass(frozen=True)
class SourceMapping:
    """How one kind of file maps onto (query, reference, category, id).

    `query=None` means the source holds texts without requests: the query is written by the
    generator (reverse-engineered). `reference=None` means the source holds requests only:
    every record is rejected as `no_reference`, with `note` saying why.
    """

    name: str
    pattern: str  # matched against the file name
    query: tuple[str, ...] | None = QUERY_FIELDS
    reference: tuple[str, ...] | None = REFERENCE_FIELDS
    category: tuple[str, ...] = CATEGORY_FIELDS
    id: tuple[str, ...] = ID_FIELDS
    join: Join | None = None
    drop_placeholders: tuple[str, ...] = ()  # template slots removed from the query
    note: str = ""
    extras: dict[str, str] = field(default_factory=dict)  # documentation only: fields deliberately unused

    def matches(self, path: Path) -> bool:
        return fnmatch(path.name, self.pattern)


_HELLOBENCH_ANSWERS = "_claude35_responses.jsonl"

# Declared sources, most specific pattern first. Every file under ../shared/data maps here.
REGISTRY: tuple[SourceMapping, ...] = (
    SourceMapping(
        name="eqbench-creative-writing",
        pattern="eqbench_creative_writing_prompts*.json",
        query=("writing_prompt",),
        reference=("reference_output",),
        category=(),
        id=(),  # a JSON object keyed "1".."29": the key is the id
        # The reference answers were not written to any one of the listed seed modifiers, so
        # filling <SEED> with one would ask for something y may not do; the slot is dropped.
        drop_placeholders=("<SEED>",),
        extras={"seed_modifiers": "unused: <SEED> is dropped", "judging_criteria": "unused"},
    ),
    SourceMapping(
        name="hellobench-answers",
        pattern=f"hellobench_*{_HELLOBENCH_ANSWERS}",
        query=("instruction",),
        reference=("response",),
        category=(),
        id=("id",),
        join=Join(
            replace=(_HELLOBENCH_ANSWERS, ".jsonl"), on="id", fields={"query": "instruction", "category": "category"}
        ),
        note="model-written answers (Claude 3.5); the query and category come from the queries file with the same id",
    ),
    SourceMapping(
        name="hellobench-queries",
        pattern="hellobench_*.jsonl",
        query=("instruction",),
        reference=None,
        category=("category",),
        id=("id",),
        join=Join(replace=(".jsonl", _HELLOBENCH_ANSWERS), on="id", fields={"reference": "response"}),
        note="HelloBench queries carry no answer; answers come from the matching *_claude35_responses.jsonl",
        extras={"checklists": "unused", "requirements": "unused (already inside the instruction)"},
    ),
    SourceMapping(
        name="longbench-write",
        pattern="longbench_write*.jsonl",
        query=("prompt",),
        reference=None,
        category=("type",),
        id=(),
        note="LongBench-Write holds writing requests with a target length only, no reference answer to reverse-engineer from",
        extras={"length": "unused"},
    ),
)

DEFAULT = SourceMapping(name="default", pattern="*")
PLAIN_TEXT = SourceMapping(name="plain-text", pattern="*.txt", query=None, reference=TEXT_FIELDS, category=(), id=())


def mapping_for(path: Path, override: SourceMapping | None = None, text: bool = False) -> SourceMapping:
    """The mapping for a file: the user's override, else a declared source, else the defaults."""
    if text:  # a plain-text file has one field; field overrides are for structured files
        return PLAIN_TEXT
    if override is not None:
        return override
    return next((m for m in REGISTRY if m.matches(path)), DEFAULT)


class MappingError(ValueError):
    """A field override the user wrote cannot be understood."""


def field_pairs(pairs: list[str] | None) -> dict[str, str]:
    """`role=field` strings (CLI `--map`) as a dict; MappingError names the first bad one."""
    return dict(_split_pair(p) for p in pairs or [])


def parse_overrides(fields: dict[str, str] | None) -> SourceMapping | None:
    """A mapping from role -> field (CLI `--map`, or settings); several fields may be given as "a,b".

    Roles not named keep the default aliases; an empty query field means texts without requests.
    """
    if not fields:
        return None
    changes: dict[str, tuple[str, ...] | None] = {}
    for role, name in fields.items():
        if role not in ROLES:
            raise MappingError(f"unknown role {role!r} in a field mapping: use {', '.join(ROLES)}")
        names = tuple(n.strip() for n in str(name).split(",") if n.strip())
        if not names and role == "reference":  # texts without requests exist; answers without answers do not
            raise MappingError("the reference needs a field: reference=FIELD (only query= may be empty)")
        changes[role] = names if names or role in ("category", "id") else None
    return replace(DEFAULT, name="override", pattern="*", **changes)


def _split_pair(pair: str) -> tuple[str, str]:
    role, sep, name = pair.partition("=")
    if not sep:
        raise MappingError(f"field mapping {pair!r} is not role=field (e.g. query=prompt)")
    return role.strip(), name.strip()


def describe(mapping: SourceMapping) -> str:
    """One line naming the fields a mapping reads, for notices and docs."""

    def show(names):
        return "|".join(names) if names else "-"

    parts = [
        f"query={show(mapping.query) if mapping.query is not None else '(written by the generator)'}",
        f"reference={show(mapping.reference) if mapping.reference is not None else '(none)'}",
        f"category={show(mapping.category)}",
        f"id={'|'.join(mapping.id) or '(record key)'}",
    ]
    if mapping.join:
        parts.append(f"join={mapping.join.replace[1]!r}-sibling on {mapping.join.on}")
    return f"{mapping.name}: " + ", ".join(parts)
