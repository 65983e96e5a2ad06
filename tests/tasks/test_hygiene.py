from reer.tasks.hygiene import normalize_text, script_language, too_long


def test_normalize_text_unicode_and_whitespace():
    assert normalize_text("  e\u0301\r\nline  \n") == "\u00e9\nline"
    assert normalize_text("a\u00a0b\u200bc\x07") == "a bc"
    assert normalize_text("one\n\n\n\n\ntwo") == "one\n\ntwo"
    assert normalize_text("第一段\n\u3000\u3000第二段") == "第一段\n\u3000\u3000第二段"  # Chinese indentation stays


def test_script_language():
    assert script_language("Write a short story about a lighthouse.") == "en"
    assert script_language("请写一篇关于灯塔的短篇小说。") == "zh"
    assert script_language("Напишите короткий рассказ о маяке.") is None
    assert script_language("2024 — 42%") == "en"


def test_too_long_counts_query_and_reference():
    words = lambda text: len(text.split())  # noqa: E731
    assert too_long("a b", "c d e", words, 5) == (5, False)
    assert too_long("a b", "c d e f", words, 5) == (6, True)
    assert too_long("", "c d e f", words, 5) == (4, False)


def test_normalize_text_drops_bidi_and_other_format_controls():
    # U+202E flips what follows on screen; U+2066-2069 and U+200E/F are the other direction marks.
    assert normalize_text("fic\u202etion") == "fiction"
    assert normalize_text("\u2066a\u2069\u200eb\u200f\u061cc\u2064") == "abc"
    assert normalize_text("写\u202e作") == "写作"


def test_a_given_category_is_normalized_like_the_text(tmp_path):
    import json

    from reer.tasks.mappings import field_pairs, parse_overrides
    from reer.tasks.sources import read_source

    path = tmp_path / "odd.jsonl"
    record = {"ask": "Write a note.", "text": "A" * 120, "kind": " my\u202e\u00a0  own\u200b\tkind\x07 "}
    path.write_text(json.dumps(record) + "\n")
    (example,) = read_source(path, parse_overrides(field_pairs(["query=ask", "reference=text", "category=kind"])))
    assert (example.category, example.category_given, example.category_source) == (
        "my own kind",
        "my own kind",
        "given",
    )
    poem = {**record, "kind": "Po\u202eetry"}
    path.write_text(json.dumps(poem) + "\n")
    (example,) = read_source(path, parse_overrides(field_pairs(["query=ask", "reference=text", "category=kind"])))
    assert (example.category, example.category_source) == ("poem", "mapped")


def test_normalize_text_drops_c1_controls():
    # U+009B is CSI: a terminal reads "\x9b31m" as an escape sequence; U+0085 (NEL) and U+0080 too are controls.
    assert normalize_text("red\u009b31m text\u0085\u0080") == "red31m text"
    assert normalize_text("\u009b\u009f") == ""
