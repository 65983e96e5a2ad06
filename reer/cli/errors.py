"""The error policy: a user sees one line per problem on stderr, never a traceback.

Every command ends a problem with `fail` (or `guarded`, around a step that may raise): `reer:`
and the message, on one line whatever the terminal's width, then exit status 1. A bad setting
is one line naming it (`bad option search.tau: ...`). Prefect's own console handler, which
would add tracebacks, stays quiet unless `-v` asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from reer.settings import Settings


def first_line(error: BaseException | str) -> str:
    """The first line of an error's message ('' for an empty message)."""
    text = str(error)
    return text.splitlines()[0] if text.strip() else ""


def describe(error: BaseException) -> str:
    """An error as one line naming its kind: `ValueError: the first line of its message`."""
    return f"{error.__class__.__name__}: {first_line(error)}"


def say(message: str, style: str = "red") -> None:
    """`reer: message` on stderr, on one line; the message is printed as it is (no markup)."""
    # soft_wrap: one line whatever the width, so a log or a test sees one line per problem
    line = Text.assemble(("reer:", style), " ", message)
    Console(stderr=True, highlight=False).print(line, soft_wrap=True)


def fail(message: str, code: int = 1, style: str = "red") -> NoReturn:
    """Say `reer: message` on one line and exit with `code`."""
    say(message, style)
    raise typer.Exit(code)


@contextmanager
def guarded(action: str = "", hint: str = "", clear: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Errors raised inside end the command in one line.

    Errors of a `clear` kind speak for themselves: their message is the line. Any other becomes
    `{action}{Kind}: {first line}{hint}`, e.g. `run failed: ` ... ` (details: reer run -v)`.
    """
    try:
        yield
    except typer.Exit:
        raise
    except clear as error:
        fail(str(error))
    except Exception as error:
        fail(f"{action}{describe(error)}{hint}")


def settings_from(**options: Any) -> Settings:
    """Settings from the environment, with the options that were given (None: not given) over it.

    Built once per command. A bad value is one line: `bad option search.tau: <why>`.
    """
    from pydantic import ValidationError

    from reer.settings import Settings

    try:
        return Settings(**{name: value for name, value in options.items() if value is not None})
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"bad option {'.'.join(map(str, first['loc']))}: {first['msg']}")


def quiet_prefect(verbose: bool) -> None:
    """Prefect's local API without telemetry; its console logs only when asked for."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not verbose:
        # reer prints one line per problem; Prefect's console handler would add tracebacks.
        # Logs still reach Prefect's API and dashboard.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "100")
