"""Shared fixtures: one model load per test session, Prefect kept local and quiet, real data paths."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from pathlib import Path

# Prefect reads these when it is imported: a private home, no telemetry, room to start.
_PREFECT_HOME = tempfile.mkdtemp(prefix="reer-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import pytest  # noqa: E402

SHARED_DATA = Path(os.environ.get("REER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HOME = Path(os.environ.get("REER_HOME", Path("~/.cache/reer").expanduser()))


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or a skip that says plainly what is missing."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs {path}: the real data beside the repository (see shared/data/PROVENANCE.md)")
    return path


@pytest.fixture(scope="session")
def fp32_model():
    """SmolLM2-135M-Instruct in fp32 (the exact reference), loaded once per session."""
    from reer.models.loading import load_model

    return load_model("SmolLM2-135M-Instruct", dtype="float32", home=HOME)


def _silence_teardown() -> None:
    """At exit, after pytest has reported: DuckDB's bindings list false "leaks" at interpreter teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


atexit.register(_silence_teardown)
