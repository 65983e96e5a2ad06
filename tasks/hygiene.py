"""Input hygiene: Unicode and whitespace normalization, language, and token limits."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from functools import cache

from reer.tasks.prompts import detect_language

# Zero-width characters and the BOM carry nothing a reader sees, but change the content hash.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
# Spaces that look like spaces; the ideographic space U+3000 is kept: Chinese indents with it.
_SPACES = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\t]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 but tab and newlines, DEL, C1 (NEL, CSI)
_BLANK_RUNS = re.compile(r"\n{3,}")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


@cache
def _format_controls() -> re.Pattern[str]:
    """Every format character (Unicode category Cf), computed once from this Python's Unicode tables.

    Bidi controls (U+202A-202E, U+2066-2069, U+200E/F, U+061C) reorder what a reader sees: a
    category or query could show one text and hash as another. All of Cf goes, ZWJ and ZWNJ
    included as before (_INVISIBLE): reer takes English and Chinese only, which never need them;
    the scripts that do (Persian, Indic) are rejected as unsupported. The cost: an emoji ZWJ
    sequence falls apart into its emoji, and a tag flag (Scotland's) shows as a black flag.
    """
    points = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    return re.compile("[" + "".join(re.escape(chr(c)) for c in points) + "]")


def normalize_text(text: str) -> str:
    """NFC, Unix newlines, plain spaces, no control, format (bidi, zero-width) characters, one blank line at most."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _format_controls().sub("", _CONTROL.sub("", text.translate(_INVISIBLE)))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    # Paragraphs are split on blank lines downstream; longer blank runs mean nothing more.
    return _BLANK_RUNS.sub("\n\n", text).strip()


def script_language(text: str) -> str | None:
    """'zh' or 'en' as `detect_language` says, or None when letters are mostly neither Latin nor CJK."""
    letters = [c for c in text if c.isalpha()]
    if letters:
        known = sum(1 for c in letters if _CJK.match(c) or _LATIN.match(c))
        if known / len(letters) < 0.5:
            return None
    return detect_language(text)


def token_budget(context_window: int, reserve: int) -> int:
    """Tokens left for query + reference once the thinking and chat template have their room."""
    return context_window - reserve


def too_long(query: str, reference: str, count_tokens: Callable[[str], int], budget: int) -> tuple[int, bool]:
    """(tokens of query + reference under the scorer, whether they exceed the budget)."""
    tokens = count_tokens(query) + count_tokens(reference) if query else count_tokens(reference)
    return tokens, tokens > budget
