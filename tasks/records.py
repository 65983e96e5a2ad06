"""The two things ingesting yields for every input record: an Example, or a Rejected with its reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """A normalized (query, reference) pair and where it came from.

    `query` is empty until the generator writes one for a text that came without a request
    (`query_synthesized`); the id of such an example hashes the reference alone, so ingesting
    the same text again finds it before any model work.
    """

    example_id: str
    query: str
    reference: str
    source: str
    source_record: str
    category: str | None
    language: str
    source_id: str | None = None  # the record's own id in its source (a field or a key)
    query_synthesized: bool = False
    query_prompt_version: str | None = None
    category_given: str | None = None  # the category as the source spelled it
    category_source: str | None = None  # mapped | given | model
    category_confidence: float | None = None
    category_method: str | None = None
    tokens: int | None = None  # query + reference in the scorer's tokens

    @property
    def needs_query(self) -> bool:
        return not self.query


@dataclass(frozen=True)
class Rejected:
    """A record that could not become an example, kept with its reason."""

    source: str
    source_record: str
    reason: str
    detail: str
    payload: str | None = None
    example_id: str | None = None

    def line(self) -> str:
        """The one line a user sees."""
        return f"skipped {self.source} {self.source_record}: {self.detail}"
