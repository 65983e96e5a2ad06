"""Exact and near-duplicate detection: MinHash signatures over word shingles, bucketed by LSH bands.

Texts are compared as sets of shingles (runs of `shingle` consecutive units: words, or single
CJK characters). MinHash signatures, cut into LSH bands, find the pairs worth comparing without
comparing all pairs; those pairs then get their exact Jaccard similarity.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rensa import RMinHash, RMinHashLSH

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


# rensa (library) over the hand-written numpy MinHash: faster, less memory, the same matches (bench/NOTES.md).
@dataclass(frozen=True)
class MinHasher:
    """`permutations` MinHash functions fixed by a seed: rensa's, whose string hashing is not salted per process."""

    permutations: int = 128
    seed: int = 1

    def minhash(self, items: set[str]) -> RMinHash:
        minhash = RMinHash(self.permutations, self.seed)
        minhash.update(list(items))  # order does not matter: a minimum
        return minhash

    def signature(self, items: set[str]) -> np.ndarray:
        """The minimum of each hash function over the set's items."""
        return np.asarray(self.minhash(items).digest(), dtype=np.uint32)


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
    hasher = MinHasher(permutations)
    index = RMinHashLSH(0.8, permutations, bands)  # the threshold is unused: a query returns every band match
    first_exact: dict[str, int] = {}
    sets: list[set[str]] = []
    matches: list[DuplicateMatch] = []
    for position, text in enumerate(texts):
        key = normalized(text)
        sets.append(shingles(text, shingle))
        if not key:  # an empty text (no request given) duplicates nothing; it would "match" every other empty one
            matches.append(DuplicateMatch(0.0, None, False))
            continue
        minhash = hasher.minhash(sets[-1])
        if key in first_exact:
            matches.append(DuplicateMatch(1.0, first_exact[key], True))
        else:
            first_exact[key] = position
            scored = sorted(((jaccard(sets[-1], sets[j]), -j) for j in set(index.query(minhash))), reverse=True)
            best = scored[0] if scored else (0.0, None)
            matches.append(DuplicateMatch(best[0], None if best[1] is None else -best[1], False))
        index.insert(position, minhash)
    return matches
