"""Duplicate detection: units, shingles, MinHash estimates, and the first-occurrence-kept rule."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from reer.tasks.dedup import MinHasher, estimated_jaccard, find_duplicates, jaccard, normalized, shingles, text_units

BASE = (
    "the keeper climbs the iron stairs at midnight and wipes the salt from the glass before "
    "she writes one last line in the logbook for whoever comes after her in the spring"
)


def test_units_are_words_and_single_cjk_characters():
    assert text_units("Hello, World! it's") == ["hello", "world", "it", "s"]
    assert text_units("灯塔 keeper") == ["灯", "塔", "keeper"]
    assert normalized("  Hello,   WORLD ") == normalized("hello world!")


def test_shingles_of_a_short_text_are_the_text():
    assert shingles("two words", 3) == {"two words"}
    assert shingles("a b c d", 3) == {"a b c", "b c d"}


def test_minhash_estimates_jaccard():
    a = shingles(BASE, 3)
    b = shingles(BASE.replace("midnight", "dawn").replace("spring", "autumn"), 3)
    hasher = MinHasher(256)
    assert estimated_jaccard(hasher.signature(a), hasher.signature(b)) == pytest.approx(jaccard(a, b), abs=0.1)
    assert estimated_jaccard(hasher.signature(a), hasher.signature(a)) == 1.0


def test_exact_duplicates_match_the_first_occurrence():
    matches = find_duplicates(["One text here.", "Something else entirely.", "ONE   text here!"])
    assert matches[0].earlier is None and matches[1].earlier is None
    assert matches[2].exact and matches[2].earlier == 0 and matches[2].similarity == 1.0


def test_a_near_duplicate_gets_its_exact_jaccard():
    near = BASE.replace("midnight", "dawn")
    first, second = find_duplicates([BASE, near])
    assert first.similarity == 0.0 and first.earlier is None
    assert second.earlier == 0 and not second.exact
    assert second.similarity == pytest.approx(jaccard(shingles(BASE, 3), shingles(near, 3)))
    assert second.similarity > 0.8


def test_unrelated_texts_match_nothing():
    matches = find_duplicates([BASE, "a recipe for bread with flour water salt and a long slow rise overnight"])
    assert matches[1].similarity < 0.2


def test_empty_texts_are_no_duplicates():
    matches = find_duplicates(["", "  ", "text"])
    assert [m.earlier for m in matches] == [None, None, None] and matches[1].similarity == 0.0


def test_bands_must_divide_permutations():
    with pytest.raises(ValueError, match="must divide"):
        find_duplicates(["x"], permutations=100, bands=32)


def test_signatures_are_the_same_in_every_process():
    """No per-process salt (Python's hash() has one): a fresh interpreter with another hash seed agrees."""
    code = (
        "from reer.tasks.dedup import MinHasher, shingles; import sys; "
        f"print(MinHasher(64).signature(shingles({BASE!r}, 3)).tolist())"
    )
    here = MinHasher(64).signature(shingles(BASE, 3)).tolist()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert json.loads(done.stdout) == here


def test_near_duplicates_among_many_are_found_and_scored_exactly():
    rng = random.Random(5)
    words = BASE.split()
    texts = [" ".join(rng.choices(words, k=60)) + f" text {i}" for i in range(200)]
    texts.append(texts[17].replace("keeper", "warden", 1))
    last = find_duplicates(texts)[-1]
    assert last.earlier == 17 and not last.exact
    assert last.similarity == pytest.approx(jaccard(shingles(texts[17], 3), shingles(texts[-1], 3)))
