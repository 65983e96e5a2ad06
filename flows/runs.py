"""A run's life in the store, shared by every flow: its row, then running -> completed | interrupted | failed
(or crashed, written by the next run when a process died without a word)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

import reer
from reer.ids import time_ordered_id
from reer.models.base import LanguageModel, ModelStats
from reer.models.loading import load_model
from reer.settings import Role, Settings
from reer.store import Store


def code_version() -> str:
    """reer's version and, in a git checkout, the commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{reer.__version__}+{commit}" if commit else reer.__version__


def load_models(settings: Settings):
    """Generator and scorer, each on its own backend (one object when model and backend are the same)."""
    return (
        load_model(settings.model_spec("generator")),
        load_model(settings.model_spec("scorer")),
    )


def load_verifier(settings: Settings, scorer: LanguageModel) -> LanguageModel:
    """The scorer's model in float32, which re-scores what bf16 cannot tell apart; the scorer itself when exact."""
    spec = settings.verifier_spec()
    return scorer if spec is None else load_model(spec)


def model_stats(*models: LanguageModel) -> tuple[ModelStats, ...]:
    """A copy of each model's running totals, to take the work of a stage as a difference."""
    return tuple(replace(m.stats) for m in models)


def work_since(
    before: tuple[ModelStats, ...], generator: LanguageModel, scorer: LanguageModel, verifier: LanguageModel
) -> dict[str, float]:
    """Tokens and seconds the models did since `before` (model_stats of the three).

    Verification is scoring work: it counts with the scorer's when it runs on a model of its own.
    """
    verified = verifier is not scorer
    g, s, v = (m.stats for m in (generator, scorer, verifier))
    return {
        "generated_tokens": g.generated_tokens - before[0].generated_tokens,
        "generation_seconds": g.generation_seconds - before[0].generation_seconds,
        "scored_tokens": s.scored_tokens
        - before[1].scored_tokens
        + verified * (v.scored_tokens - before[2].scored_tokens),
        "scoring_seconds": s.scoring_seconds
        - before[1].scoring_seconds
        + verified * (v.scoring_seconds - before[2].scoring_seconds),
    }


def run_row(
    run_id: str,
    flow_name: str,
    settings: Settings,
    generator: LanguageModel | None,
    scorer: LanguageModel | None,
    prompt_version: str,
    config_hash: str | None = None,
) -> dict[str, Any]:
    """The run's row of `runs`: what it ran with, so its outputs can be traced to settings, models and code."""
    return {
        "run_id": run_id,
        "flow_run_id": flow_run.id,
        "flow_name": flow_name,
        "config": settings.model_dump(mode="json"),
        "config_hash": config_hash,
        "generator_model": getattr(generator, "model_id", None),
        "scorer_model": getattr(scorer, "model_id", None),
        "backend": settings.backend_label(),
        "dtype": settings.dtype,
        "prompt_version": prompt_version,
        "code_version": code_version(),
        **role_columns("generator", settings, generator),
        **role_columns("scorer", settings, scorer),
    }


def role_columns(role: Role, settings: Settings, model: LanguageModel | None) -> dict[str, Any]:
    """One role's backend, dtype and model fingerprint as loaded; all NULL when the run loaded no model."""
    if model is None:
        return {f"{role}_backend": None, f"{role}_dtype": None, f"{role}_fingerprint": None}
    return {
        f"{role}_backend": settings.role_backend(role),
        f"{role}_dtype": getattr(model, "dtype", None),  # a served model's is the server's, which it does not report
        f"{role}_fingerprint": model.fingerprint,
    }


def new_run_id() -> str:
    """Sortable by start time, unique across processes."""
    return time_ordered_id()


@contextmanager
def recorded_run(store: Store, run: dict) -> Iterator[None]:
    """Store the run and 'running'; on Ctrl-C or an error store that status and re-raise; close the store."""
    run_id = run["run_id"]
    try:
        mark_crashed(store)
        store.write("runs", [run])
        store.write("run_events", [{"run_id": run_id, "status": "running"}])
        yield
    except KeyboardInterrupt:
        store.write("run_events", [{"run_id": run_id, "status": "interrupted"}])
        raise
    except Exception as error:
        store.write("run_events", [{"run_id": run_id, "status": "failed", "detail": {"error": str(error)}}])
        raise
    finally:
        store.drop_snapshot()
        store.close()


def mark_crashed(store: Store) -> list[str]:
    """Runs still 'running' died without a word (a kill, a power cut): this process holds the
    write lock, so none of them can still be alive. Say so in their status.

    A lake has no such lock: many runs write it at once, and a 'running' one may well be alive. None is marked.
    """
    if store.lake is not None:
        return []
    dead = store.query("SELECT run_id FROM run_overview WHERE status = 'running'")["run_id"].to_list()
    store.write(
        "run_events",
        [{"run_id": r, "status": "crashed", "detail": {"found_by": "the next run on this database"}} for r in dead],
    )
    return dead


def complete_run(store: Store, run_id: str, summary: dict[str, Any]) -> None:
    """The run finished: its figures go with the 'completed' status."""
    store.write("run_events", [{"run_id": run_id, "status": "completed", "detail": summary}])
