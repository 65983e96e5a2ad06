"""`reer eval`: the controls of a stored run, scored by the scorer's model in float32."""

from __future__ import annotations

import sys
import time

import typer
from rich.console import Console
from rich.text import Text

from reer.cli.errors import fail, guarded, quiet_prefect, settings_from
from reer.cli.options import Db


def evaluate(
    run_id: str | None = typer.Argument(None, help="run to evaluate (default: the latest completed synthesize run)"),
    db: Db = None,
    scorer: str | None = typer.Option(None, help="scorer model: the run's (a folder or the shipped SmolLM2)"),
) -> None:
    """Score every completed trajectory's answer with no thinking and with another item's thinking (float32)."""
    quiet_prefect(False)
    from reer.cli.publish import open_store
    from reer.cli.rendering import out
    from reer.lake import LakeUnavailable
    from reer.models.shipped import ModelNotFound
    from reer.store import StoreBusy, refuse_if_held
    from reer.tasks.controls import ControlsMismatch, compute
    from reer.tasks.report import latest_run

    settings = settings_from(db=db, scorer_model=scorer)
    stages = Stages()
    with guarded(clear=(StoreBusy, LakeUnavailable)):
        refuse_if_held(settings.db)  # a store another process writes is refused before the model loads
    with open_store(settings.db) as store:
        if run_id is None:
            run_id = latest_run(store.query)
            if run_id is None:
                fail("no completed synthesize run in the store yet (reer run first)")
        elif store.query("SELECT 1 FROM runs WHERE run_id = $run_id", run_id=run_id).is_empty():
            fail(f'no run {run_id!r} in the store (list them: reer sql "SELECT run_id, status FROM run_overview")')
        spec = settings.verifier_spec() or settings.model_spec("scorer")  # float32; the scorer when it is already
        stages(f"loading the scorer {spec.name} in {spec.dtype} ({spec.backend})")
        with guarded("loading the scorer failed: ", clear=(ModelNotFound,)):
            from reer.models.loading import load_model

            verifier = load_model(spec)
        with guarded("eval failed: ", clear=(ControlsMismatch,)), stages.spinning("scoring the controls"):
            result = compute(store, run_id, verifier, on_stage=stages)  # split and clipped as the run's search did
    console = out()
    for line in result.lines():
        console.print(Text(line), soft_wrap=True)
    console.print(
        Text(f"per trajectory: reer sql \"SELECT * FROM trajectory_controls WHERE run_id = '{run_id}'\""),
        soft_wrap=True,
    )


class Stages:
    """Progress on stderr: a line per stage with the time since the command began, and a spinner on a terminal."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        self.console.print(Text(f"{message} ... {time.monotonic() - self.started:.1f} s"), soft_wrap=True)

    def spinning(self, message: str):
        """A spinner while the block runs, on a terminal only (a log gets the stage lines)."""
        from contextlib import nullcontext

        return self.console.status(message) if sys.stderr.isatty() else nullcontext()
