"""Reverse-engineered queries: for a text that came without one, the generator writes the request it answers.

A 135M model asked openly for "the request" mostly echoes the instruction. It follows when
the request is pre-filled up to its subject: the kind of piece (the category label, assigned
first) and its length are known, so the assistant turn opens with "Write a short story of
about 400 words about" and the model only names the subject. Decoding is greedy, so the
same text and model give the same query.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from reer.models.base import GenerationRequest, LanguageModel
from reer.tasks.categories import Taxonomy
from reer.tasks.records import Example

TEXT_CHARS = 1200  # what the generator reads of the text


@dataclass(frozen=True)
class QueryPrompt:
    """The request-writing prompt in one language."""

    user: str
    prefill: str  # formatted with {kind} and {length}
    stops: tuple[str, ...]
    end: str


ENGLISH = QueryPrompt(
    # Asked only for the subject: when the prompt also spoke of "the request", the model
    # sometimes named that as the subject ("...about a one-sentence writing request").
    user="Here is a piece of writing.\n\n{text}\n\nIn a few words, what is it about?",
    prefill="Write {kind} of about {length} words about",
    stops=("\n", ". "),
    end=".",
)
CHINESE = QueryPrompt(
    user="下面是一篇文章。\n\n{text}\n\n用几个词概括：它写的是什么？",
    prefill="请写一篇约{length}字的{kind}，主题是",
    stops=("\n", "。"),
    end="。",
)
PROMPTS = {"en": ENGLISH, "zh": CHINESE}
MAX_TOKENS = 48
ECHOES = ("writing request", "this piece", "this text", "一句话", "写作要求")  # the prompt talking, not a subject


def _version() -> str:
    text = "\x00".join(part for p in PROMPTS.values() for part in (p.user, p.prefill, *p.stops, p.end, *ECHOES))
    return "q1-" + hashlib.sha256(f"{text}\x00{TEXT_CHARS}\x00{MAX_TOKENS}".encode()).hexdigest()[:8]


QUERY_PROMPT_VERSION = _version()  # stored with every synthesized query


def rounded_length(text: str, language: str) -> int:
    """Words (characters for Chinese) rounded to a number a person would ask for."""
    n = len("".join(text.split())) if language == "zh" else len(text.split())
    step = 100 if n >= 300 else 10
    return max(step, round(n / step) * step)


def query_request(example: Example, taxonomy: Taxonomy) -> GenerationRequest:
    """The generation that writes the request for `example`'s text."""
    prompt = PROMPTS[example.language]
    found = taxonomy.get(example.category or "")
    kind = (found.label_zh if found else "文章") if example.language == "zh" else found.label if found else "a piece"
    prefill = prompt.prefill.format(kind=kind, length=rounded_length(example.reference, example.language))
    return GenerationRequest(
        messages=(("user", prompt.user.format(text=example.reference[:TEXT_CHARS])),),
        prefill=prefill,
        n=1,
        temperature=0.0,
        max_new_tokens=MAX_TOKENS,
        stop=prompt.stops,
    )


def names_a_subject(subject: str, language: str) -> bool:
    """False for nothing, an echo of the prompt, or a loop ("the topic of the topic of ...")."""
    if len(subject) < (2 if language == "zh" else 3):  # "春天" names a subject; "it" does not
        return False
    if any(echo in subject.lower() for echo in ECHOES):
        return False
    words = subject.split()
    return len(words) < 8 or len(set(words)) > len(words) / 2


def finish_query(prefill: str, text: str, language: str) -> str | None:
    """The whole request, or None when the model named no subject."""
    subject = text.strip().rstrip(".。,，;；:：")
    if not names_a_subject(subject, language):
        return None
    sep = "" if language == "zh" else " "
    return f"{prefill}{sep}{subject}{PROMPTS[language].end}"


def write_queries(model: LanguageModel, examples: list[Example], taxonomy: Taxonomy) -> list[Example | None]:
    """Each example with its synthesized query, or None where the model wrote nothing usable."""
    requests = [query_request(e, taxonomy) for e in examples]
    outputs = model.generate(requests) if requests else []
    written: list[Example | None] = []
    for example, request, out in zip(examples, requests, outputs):
        query = finish_query(request.prefill, out[0].text, example.language)
        written.append(
            None
            if query is None
            else replace(example, query=query, query_synthesized=True, query_prompt_version=QUERY_PROMPT_VERSION)
        )
    return written
