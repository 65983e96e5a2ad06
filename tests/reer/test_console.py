"""One-line notices reach the terminal without escape sequences, whatever data they quote."""

from __future__ import annotations

from reer.console import clean, notice


def test_a_notice_quoting_a_hostile_path_prints_no_escape_sequence(capfd):
    notice("skipped \x1b]0;pwned\x07incoming/\x1b[2Jdata\x9b31m.jsonl line 3: malformed_json")
    printed = capfd.readouterr().err
    assert "\x1b" not in printed and "\x07" not in printed and "\x9b" not in printed
    assert "skipped incoming/data31m.jsonl line 3: malformed_json" in printed


def test_clean_keeps_newlines_tabs_and_ordinary_text():
    assert clean("a\tb\nc [/INST] ü 中") == "a\tb\nc [/INST] ü 中"
