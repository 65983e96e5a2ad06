"""Duplicate detection: units, shingles, MinHash estimates, and the first-occurrence-kept rule."""

from __future__ import annotations

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
