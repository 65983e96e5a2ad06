"""Prompts as every backend sends them: the model folder's tokenizer and chat template.

All backends encode with the same tokenizer, so the transformers, vLLM and served scores are of
the same token sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reer.models.base import GenerationRequest, ScoreRequest

COUNTED_KEPT = 1024  # encoded requests kept between counting and sending; ones never sent age out


class ChatTokenizer:
    """The model folder's tokenizer: encoding and chat rendering, the same for every backend."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # Requests counted against the window, encoded, until they are sent: encoding a 2-3k-token
        # prompt costs milliseconds, and a counted request would otherwise be encoded twice.
        self._counted: dict[GenerationRequest | ScoreRequest, list[int] | tuple[list[int], int]] = {}

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        chat = [{"role": role, "content": content} for role, content in messages]
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def generation_prompt(self, request: GenerationRequest) -> list[int]:
        """The token ids of the chat-rendered prompt plus its pre-filled assistant text."""
        counted = self._counted.pop(request, None) if self._counted else None
        return counted if counted is not None else self.encode(self.render_chat(request.messages) + request.prefill)

    def score_prompt(self, request: ScoreRequest) -> tuple[list[int], int]:
        """Context and target token ids joined, and where the target starts."""
        counted = self._counted.pop(request, None) if self._counted else None
        if counted is not None:
            return counted
        context = self.encode(request.context)
        return context + self.encode(request.target), len(context)

    def request_tokens(self, request: GenerationRequest | ScoreRequest) -> int:
        """Tokens `request` takes of the context window, encoded exactly as it will be sent.

        A generation: its prompt and up to `max_new_tokens` more. A scoring: context and target,
        and the one token vLLM generates to return their log-probabilities (a server refuses a
        prompt that leaves no room for it).
        """
        if isinstance(request, GenerationRequest):
            encoded = self.generation_prompt(request)
            tokens = len(encoded) + request.max_new_tokens
        else:
            encoded = self.score_prompt(request)
            tokens = len(encoded[0]) + 1
        if len(self._counted) >= COUNTED_KEPT:
            del self._counted[next(iter(self._counted))]  # the oldest: counted, refused, never sent
        self._counted[request] = encoded
        return tokens
