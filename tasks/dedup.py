"""Exact and near-duplicate detection: MinHash signatures over word shingles, bucketed by LSH bands.

Texts are compared as sets of shingles (runs of `shingle` consecutive units: words, or single
CJK characters). MinHash signatures, cut into LSH bands, find the pairs worth comparing without
comparing all pairs; those pairs then get their exact Jaccard similarity.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

_PRIME = (1 << 31) - 1  # a Mersenne prime: a*h + b stays inside uint64 for 31-bit a, b and h
_UNIT = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


def text_units(text: str) -> list[str]:
    """Lower-cased words, with each CJK character a unit of its own (Chinese has no spaces)."""
    return _UNIT.findall(text.casefold())


def normalized(text: str) -> str:
    """The text as compared for exact duplicates: units only, so case, spacing and punctuation don't count."""
    return " ".join(text_units(text))


def shingles(text: str, size: int) -> set[str]:
    """Every run of `size` consecutive units; a text shorter than that is one shingle."""
    units = text_units(text)
    if len(units) <= size:
        return {" ".join(units)}
    return {" ".join(units[i : i + size]) for i in range(len(units) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class MinHasher:
    """`permutations` universal hash functions h(x) = (a*x + b) mod p, fixed by a seed."""

    permutations: int = 128
    seed: int = 1

    @cached_property
    def _coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, _PRIME, size=self.permutations, dtype=np.uint64)
        b = rng.integers(0, _PRIME, size=self.permutations, dtype=np.uint64)
        return a, b

    def signature(self, items: set[str]) -> np.ndarray:
        """The minimum of each hash function over the set's items."""
        a, b = self._coefficients
        base = np.fromiter((_stable_hash(s) for s in items), dtype=np.uint64, count=len(items))
        return ((np.outer(base, a) + b) % _PRIME).min(axis=0)


def _stable_hash(item: str) -> int:
    """A 31-bit hash that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(item.encode(), digest_size=8).digest(), "big") % _PRIME


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The share of signature positions where the two agree."""
    return float(np.mean(a == b))


@dataclass(frozen=True)
class DuplicateMatch:
    """For one text: its most similar earlier text, if any looked similar at all."""

    similarity: float  # exact Jaccard similarity of the shingle sets; 0.0 with no candidate
    earlier: int | None  # index of that earlier text
    exact: bool  # the same text once case, spacing and punctuation are ignored


def find_duplicates(
    texts: Sequence[str], shingle: int = 3, permutations: int = 128, bands: int = 32
) -> list[DuplicateMatch]:
    """For each text in order, the most similar text before it; the first of a group matches nothing.

    MinHash with LSH only proposes candidates (32 bands of 4 rows make a pair at Jaccard 0.8 a
    candidate with probability above 0.99); each candidate's similarity is then computed
    exactly, because the maximum of many noisy estimates runs high. Keeping the first
    occurrence and flagging later ones makes the result independent of which pair is found first.
    """
    if permutations % bands:
        raise ValueError(f"bands ({bands}) must divide permutations ({permutations})")
    rows = permutations // bands
    hasher = MinHasher(permutations)
    first_exact: dict[str, int] = {}
    buckets: dict[tuple[int, bytes], list[int]] = {}
    sets: list[set[str]] = []
    matches: list[DuplicateMatch] = []
    for index, text in enumerate(texts):
        key = normalized(text)
        sets.append(shingles(text, shingle))
        if not key:  # an empty text (no request given) duplicates nothing; it would "match" every other empty one
            matches.append(DuplicateMatch(0.0, None, False))
            continue
        signature = hasher.signature(sets[-1])
        keys = [(band, signature[band * rows : (band + 1) * rows].tobytes()) for band in range(bands)]
        if key in first_exact:
            matches.append(DuplicateMatch(1.0, first_exact[key], True))
        else:
            first_exact[key] = index
            scored = sorted(
                ((jaccard(sets[-1], sets[j]), -j) for j in {j for k in keys for j in buckets.get(k, ())}), reverse=True
            )
            best = scored[0] if scored else (0.0, None)
            matches.append(DuplicateMatch(best[0], None if best[1] is None else -best[1], False))
        for k in keys:
            buckets.setdefault(k, []).append(index)
    return matches
