"""The CLI's error policy: an error is one line, `reer: ...`, on stderr, whatever the width and the text."""

from __future__ import annotations

import pytest
import typer

from reer.cli.errors import describe, fail, first_line, guarded, settings_from


def test_first_line_is_the_first_line_of_the_message_or_nothing():
    assert first_line(ValueError("bad thing\nwhere: line 3\n")) == "bad thing"
    assert first_line(ValueError()) == "" and first_line("") == ""
    assert describe(KeyError("missing")) == "KeyError: 'missing'"
    assert describe(RuntimeError("one\ntwo")) == "RuntimeError: one"


def test_fail_says_one_unwrapped_line_and_exits_1(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    message = "a message far longer than the thirty columns of this terminal, with [bold]brackets[/bold]"
    with pytest.raises(typer.Exit) as stopped:
        fail(message)
    assert stopped.value.exit_code == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"reer: {message}\n"


def test_guarded_turns_errors_into_one_line(capsys):
    with pytest.raises(typer.Exit), guarded("run failed: ", " (details: reer run -v)"):
        raise OSError("disk full\nerrno 28")
    assert capsys.readouterr().err == "reer: run failed: OSError: disk full (details: reer run -v)\n"
    with pytest.raises(typer.Exit), guarded("run failed: ", clear=(LookupError,)):
        raise LookupError("no run 'x' in the store")
    assert capsys.readouterr().err == "reer: no run 'x' in the store\n"
    with pytest.raises(typer.Exit) as passed, guarded():
        raise typer.Exit(3)  # an exit already decided goes through as it is
    assert passed.value.exit_code == 3 and capsys.readouterr().err == ""
    with guarded():
        value = 7
    assert value == 7


def test_a_bad_setting_is_one_line_naming_it(capsys, monkeypatch):
    monkeypatch.setenv("REER_SEARCH__K", "5")
    settings = settings_from(db=None, search={"tau": 0.5})
    assert settings.search.tau == 0.5 and settings.search.k == 5  # given over the environment, the rest kept
    with pytest.raises(typer.Exit):
        settings_from(search={"tau": "low"})
    assert capsys.readouterr().err.startswith("reer: bad option search.tau: Input should be a valid number")
