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
