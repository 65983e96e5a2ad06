"""Segmentation of a thinking trajectory (or a reference answer) into editable pieces."""

from __future__ import annotations

import re

_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_MATH_BLOCK = re.compile(r"\\\[.*?\\\]", re.DOTALL)


def _split_outside_math(text: str, separator: re.Pattern[str]) -> list[str]:
    """Split on `separator`, except where it falls inside a display-math block \\[...\\]."""
    protected = [(m.start(), m.end()) for m in _MATH_BLOCK.finditer(text)]
    pieces, start = [], 0
    for match in separator.finditer(text):
        if any(lo < match.start() < hi for lo, hi in protected):
            continue
        pieces.append(text[start : match.start()])
        start = match.end()
    pieces.append(text[start:])
    return pieces


def segment(text: str, min_chars: int = 100) -> list[str]:
    """Split on blank lines (single newlines if that gives one piece); merge short pieces forward.

    Pieces under `min_chars` characters (and blank runs) are merged into the next piece,
    a short last piece into the one before it. Display math is never split.
    """
    pieces = [p.strip() for p in _split_outside_math(text, _BLANK_LINES)]
    pieces = [p for p in pieces if p]
    joiner = "\n\n"
    if len(pieces) <= 1:
        pieces = [p.strip() for p in _split_outside_math(text.strip(), re.compile(r"\n"))]
        pieces = [p for p in pieces if p]
        joiner = "\n"
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry}{joiner}{piece}" if carry else piece
        if len(piece) < min_chars:
            carry = piece
            continue
        merged.append(piece)
        carry = ""
    if carry:
        if merged:
            merged[-1] = f"{merged[-1]}{joiner}{carry}"
        else:
            merged.append(carry)
    return merged


def join_segments(segments: list[str]) -> str:
    """The trajectory text: segments joined by blank lines."""
    return "\n\n".join(segments)
