"""The protocol every backend implements, and the request/result types it speaks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "eos", "length"]


class ModelUnavailable(RuntimeError):
    """A model backend did not answer (a served model timed out or went away) after its own retries."""


@dataclass(frozen=True)
class GenerationRequest:
    """Chat messages, an optional pre-filled assistant turn, and sampling settings."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    prefill: str = ""
    n: int = 1
    temperature: float = 0.8
    top_p: float = 0.85
    repetition_penalty: float = 1.0  # >1 discourages tokens already in the prompt or output
    max_new_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()
    # No end of turn and no stop string before this many new tokens: a model that would end its
    # thinking early writes on instead (the CPU sampler masks EOS and every token that could start
    # a stop string; vLLM's `min_tokens` masks EOS and ignores stop strings until then).
    min_new_tokens: int = 0
    # No sample repeats more than `max_copied_tokens` consecutive tokens of `copy_source` (0: no
    # limit): a rewrite cannot hand its segment back word for word. The pre-filled text counts.
    copy_source: str = ""
    max_copied_tokens: int = 0
    # No sample repeats a run longer than this many tokens of its own output (0: no limit): a small
    # model's loop is cut where it starts, not at the token limit.
    max_repeated_tokens: int = 0


@dataclass(frozen=True)
class Generation:
    """One sampled continuation of the pre-filled assistant turn."""

    text: str  # continuation only; the stop string is cut off
    finish_reason: FinishReason
    tokens: int


@dataclass(frozen=True)
class ScoreRequest:
    """Score `target` given `context`: one log-probability per target token."""

    context: str
    target: str


@dataclass
class ModelStats:
    """What a backend did, for throughput figures."""

    generated_tokens: int = 0
    generation_seconds: float = 0.0
    generation_calls: int = 0
    scored_tokens: int = 0
    computed_tokens: int = 0  # tokens run through the network to score, shared prefixes once
    scoring_seconds: float = 0.0
    scoring_calls: int = 0
    extra: dict = field(default_factory=dict)

    def count_scoring(self, encoded: Sequence[tuple[Sequence[int], int]], seconds: float) -> None:
        """One scoring call over whole sequences (token ids, first scored position), each computed in full."""
        self.scoring_calls += 1
        self.scored_tokens += sum(len(ids) - start for ids, start in encoded)
        self.computed_tokens += sum(len(ids) for ids, _ in encoded)
        self.scoring_seconds += seconds


@dataclass(frozen=True)
class Feeding:
    """How a backend takes work: calls at once, one item's need per call or batches, and its engine.

    Models that name the same `engine` share its calls (two models on one CPU do not compute
    faster side by side); `None` gives the model a lane of its own.
    """

    calls: int = 1
    per_item: bool = False
    engine: str | None = "shared"


@runtime_checkable
class LanguageModel(Protocol):
    """A backend: transformers on CPU, vLLM in-process or served."""

    model_id: str
    fingerprint: str  # the model's content, not its folder's name (models/loading.model_fingerprint)
    context_window: int
    stats: ModelStats

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        """Return `request.n` generations for each request, in order."""
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Return the log-probability of each actual target token, per request."""
        ...

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        """The chat-templated prompt text, ending with the assistant turn's opening."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` under this model's tokenizer."""
        ...

    def request_tokens(self, request: GenerationRequest | ScoreRequest) -> int:
        """Tokens `request` takes of `context_window` as sent: the prompt and what it may generate."""
        ...
