"""Context engineering: the generator's prompts, openers and reflection cues, in English and Chinese."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def detect_language(text: str) -> str:
    """'zh' when CJK characters make up a fifth of the non-space characters, else 'en'."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return "en"
    cjk = sum(1 for c in visible if _CJK.match(c))
    return "zh" if cjk / len(visible) >= 0.2 else "en"


@dataclass(frozen=True)
class PromptSet:
    """Everything the generator is told in one language."""

    initial: str
    refine: str
    openers: tuple[str, ...]
    cues: tuple[str, ...]
    kept_words: int  # opening words (characters for Chinese) of a segment kept in its rewrite


ENGLISH = PromptSet(
    initial="""Here is a writing request and a finished piece that answers it.

REQUEST:
{query}

FINISHED PIECE:
{reference}

Before this piece existed, its author sat and thought it through. Write that thinking as the author would have, in the first person and the present tense, as if the piece were not written yet. Work out who will read it and what the request is really asking for; what the piece needs to say and what it can leave out; how it should open, move and land; then try out a rough outline or a few trial lines. Keep the thinking much shorter than the piece and never copy its sentences. Use plain paragraphs, no lists and no headings. Let a few honest second thoughts show, each phrased differently ({cues}), without leaning on them. Close the thinking with </think>.""",
    refine="""REQUEST:
{query}

FINISHED PIECE:
{reference}

Below is the author's thinking from before the piece was written. One paragraph of it, PARAGRAPH {number}, is to be rewritten.

THINKING BEFORE IT:
{before}

PARAGRAPH {number}:
{segment}

THINKING AFTER IT:
{after}

Compare paragraph {number} with the finished piece. What does it miss about the reader, the content, the shape or the wording that the piece actually ends up using? Rewrite paragraph {number} so that it leads more naturally to the finished piece. Keep its opening words and the way it links to the thinking around it, stay in the first person, keep a natural second thought where one fits, and do not copy sentences from the piece. Write only the new paragraph {number}, between <refined> and </refined>.""",
    # Each opener opens with a reflection cue: the shipped 135M model almost never writes one of
    # its own (bench/initial.json), and the kept opening words carry it through every rewrite.
    openers=(
        "Hmm, so the request is",
        "Let me think. I need to write",
        "Hmm, let me see. The user wants",
        "Let me think about this. It asks for",
    ),
    cues=('"Hmm, maybe..."', '"Wait, that feels..."', '"Let me think..."', '"But then again..."', '"Or perhaps..."'),
    kept_words=4,
)

CHINESE = PromptSet(
    initial="""下面是一个写作请求，以及一篇已经写好的、回应这个请求的作品。

写作请求：
{query}

已完成的作品：
{reference}

在这篇作品诞生之前，作者曾认真构思过。请以作者的身份，用第一人称、现在时，把当时的思考过程写出来，就像作品还没有动笔一样。想清楚读者是谁、这个请求真正想要什么；作品必须写什么、可以舍弃什么；怎样开头、怎样推进、怎样收尾；然后试着列一个粗略的提纲，或者试写几句。思考要比作品短得多，绝不要照抄作品里的句子。用自然的段落来写，不要列表，也不要标题。可以流露几处真实的犹豫和转念，每次说法不同（{cues}），但不要过度依赖。思考结束时写上 </think>。""",
    refine="""写作请求：
{query}

已完成的作品：
{reference}

下面是作者在动笔前的思考。其中第 {number} 段需要重写。

前面的思考：
{before}

第 {number} 段：
{segment}

后面的思考：
{after}

把第 {number} 段和已完成的作品对照：关于读者、内容、结构或措辞，它漏掉了作品最终用到的哪些东西？请重写第 {number} 段，让它更自然地引向这篇作品。保留它开头的几个字以及与前后思考的衔接，继续用第一人称，合适的地方保留一处自然的转念，不要照抄作品里的句子。只写新的第 {number} 段，放在 <refined> 和 </refined> 之间。""",
    openers=("嗯，用户想要", "嗯，这次的任务是", "让我想想，这篇要写", "让我想想。先看看要求："),
    cues=("“嗯，也许……”", "“等等，这样好像……”", "“让我想想……”", "“不过话说回来……”", "“或者……”"),
    kept_words=6,
)

PROMPTS = {"en": ENGLISH, "zh": CHINESE}
REFINE_OPEN, REFINE_CLOSE = "<refined>\n", "</refined>"


def _version() -> str:
    text = "\x00".join(
        part for p in PROMPTS.values() for part in (p.initial, p.refine, *p.openers, *p.cues, str(p.kept_words))
    )
    return "v1-" + hashlib.sha256(text.encode()).hexdigest()[:8]


PROMPT_VERSION = _version()  # changes whenever any template, opener or cue changes


def pick_opener(language: str, seed: int) -> str:
    """A trajectory's opener, drawn from its language's set by its own seed."""
    return random.Random(seed).choice(PROMPTS[language].openers)


def initial_messages(query: str, reference: str, language: str) -> tuple[tuple[str, str], ...]:
    """The generator's chat for z(0): it sees x and y and writes the thinking behind y."""
    p = PROMPTS[language]
    sep = "、" if language == "zh" else ", "
    return (("user", p.initial.format(query=query, reference=reference, cues=sep.join(p.cues))),)


def refine_messages(
    query: str, reference: str, segments: list[str], index: int, original: list[str], language: str
) -> tuple[tuple[str, str], ...]:
    """The generator's chat to rewrite segment `index`: refined ones before it, original ones after."""
    p = PROMPTS[language]
    none = "（无）" if language == "zh" else "(none)"
    content = p.refine.format(
        query=query,
        reference=reference,
        number=index + 1,
        before="\n\n".join(segments[:index]) or none,
        segment=segments[index],
        after="\n\n".join(original[index + 1 :]) or none,
    )
    return (("user", content),)


def kept_opening(segment: str, language: str) -> str:
    """The first words of a segment, pre-filled into its rewrite so the rewrite keeps them."""
    n = PROMPTS[language].kept_words
    if language == "zh":
        return segment[:n]
    words = segment.split(" ")
    return " ".join(words[:n]) if len(words) > n else ""


def parse_refined(opening: str, text: str, finish_reason: str) -> tuple[str | None, str]:
    """The rewritten segment from a refine generation, or (None, reason) when there is none.

    The tag is pre-filled and generation stops at its close, so the model writes only the
    content; the end of its turn closes the tag too. A generation cut by the token limit
    never closed the tag and is not used.
    """
    if finish_reason == "length":
        return None, "no closing tag before the token limit"
    body = (opening + text).strip()
    body = body.replace(REFINE_OPEN.strip(), "").strip()
    if len(body) < 20:
        return None, "empty rewrite"
    return body, "ok"
