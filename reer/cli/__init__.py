"""The `reer` command: run the pipeline, query the store, show an item, validate, export, serve.

Each command lives with its kind (run, inspection, publish, evaluation, servers); what they print is in
rendering and progress, and the one-line error policy in errors. Nothing heavy loads at import:
Prefect, polars, torch and great-expectations come in inside the commands that use them, so
`reer --help` and `reer sql` start fast.
"""

from __future__ import annotations

import os
import sys

import typer

from reer.cli import evaluation, inspection, publish, servers
from reer.cli import run as running
from reer.cli.errors import describe, say

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Synthesize deep-reasoning data for open-ended writing (REER).",
)
# In this order in `reer --help`.
for command in (
    running.run,
    inspection.sql,
    inspection.show,
    publish.export,
    publish.validate,
    evaluation.evaluate,
    running.ingest,
    inspection.sources,
    inspection.report,
    servers.deploy,
    servers.serve,
    servers.dashboard,
):
    app.command(name="eval" if command is evaluation.evaluate else None)(command)  # `eval` would shadow a builtin


def main() -> None:
    """Entry point: run the command; keep the interpreter's teardown noise off the terminal."""
    try:
        app()
    except Exception as error:  # a bug, not bad input: one line, and the traceback when asked for
        if os.environ.get("REER_TRACEBACK"):
            import traceback

            traceback.print_exc()
        say(f"unexpected {describe(error)} (REER_TRACEBACK=1 shows where)")
        sys.exit(1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # DuckDB's bindings list still-live objects as "leaks" at interpreter teardown. Every file
        # and connection is closed by now, so their stderr goes to /dev/null; exit handlers
        # (Prefect stops its temporary server in one) still run.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())
