"""Deployments through a real Prefect server and worker, then the dashboard and the report in headless Chromium.

One server (started by `reer dashboard` on a free loopback port, with its own PREFECT_HOME) serves
both tests. The deployment run is `publish-nightly` on a crafted store: validate, export, report,
artifacts, with no model. Screenshots land in each test's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tasks.crafted import CLEAN, fill_store

pytestmark = [pytest.mark.prefect, pytest.mark.server]

REPO = Path(__file__).resolve().parents[3]
PLOTS = ("plot-score-per-step", "plot-relative-improvement", "plot-acceptance-by-segment", "plot-throughput")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reer(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `reer` command in a subprocess, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "reer.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"reer {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, with everything it started."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server from `reer dashboard` (own PREFECT_HOME, free port); `reer dashboard --stop` ends it."""
    root = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "REER_HOME": str(root / "reer-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    }
    store = fill_store(root / "reer.duckdb", list(CLEAN.values()))
    store.write(
        "rejects",
        [{"run_id": "run-1", "stage": "sourcing", "reason": "malformed_json", "detail": "line 3: malformed JSON"}],
    )
    store.close()
    try:
        started = reer(
            ["dashboard", "--port", str(port), "--db", str(root / "reer.duckdb"), "--out", str(root / "out")], env
        )
        yield {"api": api, "ui": f"http://127.0.0.1:{port}", "env": env, "root": root, "started": started.stdout}
    finally:
        subprocess.run(
            [sys.executable, "-m", "reer.cli", "dashboard", "--stop"], env=env, capture_output=True, timeout=60
        )


@pytest.fixture(scope="module")
def published(server):
    """`reer deploy`, a process worker on the pool, and one run of publish-nightly on the crafted store."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root, env = server["root"], server["env"]
    deployed = reer(["deploy"], env)
    log = open(root / "worker.log", "wb")  # noqa: SIM115 (the worker writes it until the fixture ends)
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "reer", "--limit", "1"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with temporary_settings(updates={PREFECT_API_URL: server["api"]}):
            flow_run = run_deployment(
                "publish/publish-nightly",
                timeout=300,
                poll_interval=2,
                parameters={"run_id": "run-1", "options": {"db": str(root / "reer.duckdb"), "out": str(root / "out")}},
            )
        yield {"flow_run": flow_run, "deployed": deployed.stdout, "worker_log": root / "worker.log"}
    finally:
        stop_group(worker)
        log.close()


@contextmanager
def api_client(server):
    """A Prefect client for the test's server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server["api"]}), get_client(sync_client=True) as client:
        yield client


def test_a_deployment_runs_through_a_worker_and_leaves_its_artifacts(server, published):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run = published["flow_run"]
    assert f"dashboard: {server['ui']}" in server["started"]
    assert flow_run.state and flow_run.state.is_completed(), published["worker_log"].read_text(errors="replace")[-3000:]
    with api_client(server) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert {"ingest-nightly", "synthesize-pending-nightly", "publish-nightly"} <= set(deployments)
        assert client.read_work_pool("reer").type == "process"
        run = client.read_flow_run(flow_run.id)
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    assert run.name == "publish-run-1" and {"nightly", "publish", "run:run-1"} <= set(run.tags)
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {"reer-run-items", "reer-run-summary", "reer-run-report"}
    assert {row["trajectory_id"] for row in json.loads(by_key["reer-run-items"].data)} == {"traj-a", "traj-b"}
    summary = by_key["reer-run-summary"].data
    assert "| sourcing | malformed_json | 1 |" in summary and "## Validation" in summary
    report = server["root"] / "out" / "run-1" / "report.html"
    assert report.exists() and report.as_uri() in by_key["reer-run-report"].data


def chromium_binary() -> str:
    """Debian's chromium; a plain skip without it, unless the test set-up promised it (make test)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "needs Debian's chromium for the browser checks (apt-get install chromium; `make test` installs it)"
    if os.environ.get("REER_REQUIRE_CHROMIUM"):
        pytest.fail(reason)
    pytest.skip(reason)


def browse(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (or, with `screenshot`, a PNG of it), from headless Chromium."""
    command = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--window-size=1400,1000",
    ]
    command += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    process = subprocess.Popen(
        [*command, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        out, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        stop_group(process)
        raise
    return out.decode("utf-8", errors="replace")


def page_text(dom: str) -> str:
    """The visible words of a DOM, whitespace folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_the_dashboard_and_the_report_show_the_run_in_chromium(server, published, tmp_path):
    profile = tmp_path / "chromium-profile"
    flow_run = published["flow_run"]
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with api_client(server) as client:
        artifacts = {
            a.key: a.id
            for a in client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        }
    pages = {
        "dashboard-flow-run": (
            f"{server['ui']}/runs/flow-run/{flow_run.id}",
            ["publish-run-1", "Completed", "publish-nightly", "run:run-1"],
        ),
        "dashboard-items-artifact": (
            f"{server['ui']}/artifacts/artifact/{artifacts['reer-run-items']}",
            ["reer-run-items", "traj-a", "traj-b", "pass_complete"],
        ),
        "dashboard-summary-artifact": (
            f"{server['ui']}/artifacts/artifact/{artifacts['reer-run-summary']}",
            ["reer run run-1", "Rejects by reason", "malformed_json", "report.html"],
        ),
    }
    for name, (url, expected) in pages.items():
        text = page_text(browse(url, profile))
        missing = [e for e in expected if e not in text]
        assert not missing, f"{name}: {missing} not on {url}; the page says: {text[:1500]}"
        browse(url, profile, tmp_path / f"{name}.png")
    report = server["root"] / "out" / "run-1" / "report.html"
    dom = browse(report.as_uri(), profile)
    for ident in PLOTS:
        assert f'id="{ident}"' in dom
    assert dom.count("<svg") == len(PLOTS) and "<polyline" in dom and "<rect" in dom
    text = page_text(dom)
    assert "reer run run-1" in text and "malformed_json" in text and "traj-a" in text
    browse(report.as_uri(), profile, tmp_path / "report.png")
    shots = sorted(tmp_path.glob("*.png"))
    assert len(shots) == 4 and all(s.stat().st_size > 10_000 for s in shots), shots
