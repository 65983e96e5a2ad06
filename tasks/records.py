"""The records reer stores: examples and rejects from ingest, revisions and outcomes from the search."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    """A record or an item that went no further, kept with its reason: one row of `rejects`.

    Ingest rejects name the source record; search rejects name the example or the trajectory.
    """

    source: str | None
    source_record: str | None
    reason: str
    detail: str
    payload: str | None = None
    example_id: str | None = None
    stage: str = "sourcing"  # sourcing | search
    trajectory_id: str | None = None

    def line(self) -> str:
        """The one line a user sees."""
        return f"skipped {self.source} {self.source_record}: {self.detail}"

    def row(self, run_id: str) -> dict:
        """The row of `rejects`."""
        return {**asdict(self), "run_id": run_id}


@dataclass
class RevisionRecord:
    """One scored (or skipped) version of the thinking: a row of `revisions`."""

    revision_id: str
    trajectory_id: str
    parent_id: str | None
    kind: str  # initial | candidate
    step: int
    segment_index: int | None
    candidate_index: int | None
    segment_text: str | None
    thinking: str
    accepted: bool
    status: str  # scored | rejected | unparsable | unchanged | context_overflow | pending
    note: str | None = None
    score: float | None = None
    verified_score: float | None = None  # the score in float32 (the verifier's), where acceptance needed it
    nll: float | None = None
    ppl: float | None = None
    scored_tokens: int | None = None
    thinking_tokens: int | None = None
    generated_tokens: int | None = None
    finish_reason: str | None = None


@dataclass
class OutcomeRecord:
    """How a trajectory's search ended: a row of `outcomes`."""

    trajectory_id: str
    status: str  # completed | rejected
    reason: str  # below_tau | pass_complete | converged | too_short | unfinished_thinking | single_segment | context_overflow
    final_revision_id: str | None
    initial_score: float | None
    final_score: float | None
    steps: int
    accepted_edits: int
    segments: int
    note: str | None = None  # why it ended, where no revision says it (the detail of its reject)
    initial_verified_score: float | None = None  # z(0)'s and the final revision's scores in float32
    final_verified_score: float | None = None
