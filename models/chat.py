"""Prompts as every backend sends them: the model folder's tokenizer and chat template.

All backends encode with the same tokenizer, so the transformers, vLLM and served scores are of
the same token sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reer.models.base import GenerationRequest, ScoreRequest


class ChatTokenizer:
    """The model folder's tokenizer: encoding and chat rendering, the same for every backend."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        chat = [{"role": role, "content": content} for role, content in messages]
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def generation_prompt(self, request: GenerationRequest) -> list[int]:
        """The token ids of the chat-rendered prompt plus its pre-filled assistant text."""
        return self.encode(self.render_chat(request.messages) + request.prefill)

    def score_prompt(self, request: ScoreRequest) -> tuple[list[int], int]:
        """Context and target token ids joined, and where the target starts."""
        context = self.encode(request.context)
        return context + self.encode(request.target), len(context)
