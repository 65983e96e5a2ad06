"""The REER score: clipped mean negative log-likelihood of the reference, with NLL and PPL beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reer.tasks.segments import segment

THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n<answer>\n"


@dataclass(frozen=True)
class Score:
    """S = -mean(clip(logp, lo, 0)); lower is better. NLL and PPL are unclipped."""

    score: float
    nll: float
    ppl: float
    tokens: int


def score_logprobs(logprobs: Sequence[float], clip_min: float = -2.0) -> Score:
    """Reduce per-token log-probabilities of the scored reference tokens to a Score."""
    if not logprobs:
        raise ValueError("no scored tokens")
    n = len(logprobs)
    clipped = sum(min(0.0, max(clip_min, lp)) for lp in logprobs) / n
    nll = -sum(logprobs) / n
    return Score(score=-clipped, nll=nll, ppl=math.exp(min(nll, 700.0)), tokens=n)


@dataclass(frozen=True)
class ReferenceSplit:
    """The reference answer cut into unscored context (first segment) and scored target."""

    context: str
    target: str


def split_reference(reference: str, min_chars: int = 100) -> ReferenceSplit | None:
    """First segment is context, the rest is scored; None when there is nothing after it."""
    pieces = segment(reference, min_chars)
    if len(pieces) < 2:
        return None
    return ReferenceSplit(context=pieces[0] + "\n\n", target="\n\n".join(pieces[1:]))


def scoring_context(query_prompt: str, thinking: str, reference: ReferenceSplit) -> str:
    """The scorer's sequence up to the first scored token: x, then <think> z </think>, then y_1."""
    return f"{query_prompt}{THINK_OPEN}{thinking}{THINK_CLOSE}{reference.context}"
