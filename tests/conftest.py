"""Shared fixtures: one model load per test session, Prefect kept local and quiet, real data paths."""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Prefect reads these when it is imported: a private home, no telemetry, room to start.
_PREFECT_HOME = tempfile.mkdtemp(prefix="reer-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import pytest  # noqa: E402

from reer.tasks.scoring import split_reference  # noqa: E402

SHARED_DATA = Path(os.environ.get("REER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HOME = Path(os.environ.get("REER_HOME", Path("~/.cache/reer").expanduser()))


def dict_rows(con, sql: str, *params) -> list[dict]:
    """Rows of a query on an open DuckDB connection, as dicts."""
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


def stored_rows(db, sql: str, *params) -> list[dict]:
    """Rows of a query on a store file, opened read-only for just this query."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict_rows(con, sql, *params)
    finally:
        con.close()


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or a skip that says plainly what is missing."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs {path}: the real data beside the repository (see shared/data/PROVENANCE.md)")
    return path


def short_eqbench_items(tmp_path, count=2):
    """Two EQ-Bench items, each reference cut to its first paragraphs (about 500 characters)."""
    data = json.loads(shared_file("eqbench_creative_writing_prompts.json").read_text())
    rows = []
    for key, item in data.items():
        kept = []
        for paragraph in (p for p in item["reference_output"].split("\n\n") if p.strip()):
            kept.append(paragraph)
            if sum(map(len, kept)) >= 500:
                break
        reference = "\n\n".join(kept)
        query = item["writing_prompt"].replace("<SEED>", item["seed_modifiers"][0])
        if split_reference(reference) is not None:  # something is left to score after segment one
            rows.append({"id": key, "query": query, "reference": reference})
    rows.sort(key=lambda r: len(r["reference"]))
    path = tmp_path / "eqbench_short.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:count]) + "\n")
    return path


@pytest.fixture(scope="session")
def fp32_model():
    """SmolLM2-135M-Instruct in fp32 (the exact reference), loaded once per session."""
    from reer.models.loading import load_model
    from reer.settings import ModelSpec

    return load_model(ModelSpec(dtype="float32", home=HOME))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A Prefect server on loopback for tests that start many reer processes: each one connects
    in about a second instead of starting a temporary server of its own (8-15 s)."""
    home = tmp_path_factory.mktemp("prefect-server")
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": url.rsplit(":", 1)[1].split("/")[0],
    }
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                env["PREFECT_SERVER_API_PORT"],
                "--no-services",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
            if server.poll() is not None:
                pytest.fail(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
        else:
            pytest.fail("prefect server did not answer /api/health within 120 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _silence_teardown() -> None:
    """At exit, after pytest has reported: DuckDB's bindings list false "leaks" at interpreter teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


atexit.register(_silence_teardown)
