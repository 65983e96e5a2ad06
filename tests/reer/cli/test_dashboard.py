"""Deployments through a real Prefect server and worker, then the dashboard and the report in headless Chromium.

One server (started by `reer dashboard` on a free loopback port, with its own PREFECT_HOME) serves
the tests without an auth string: the worker run, the dashboard, CORS, CSRF and refused runs. A
second one, started with PREFECT_API_AUTH_STRING, serves the auth test (`reer serve`, `reer deploy`
and the dashboard's login). The deployment run is `publish-nightly` on a crafted store: validate,
export, report, artifacts, with no model. Screenshots land in each test's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tasks.crafted import CLEAN, fill_store
from tests.tasks.test_report import PLOTS  # every plot the report draws

pytestmark = [pytest.mark.prefect, pytest.mark.server]

REPO = Path(__file__).resolve().parents[3]


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


@contextmanager
def dashboard_server(root: Path, auth: str | None = None):
    """A Prefect server from `reer dashboard` (own PREFECT_HOME, free port); `reer dashboard --stop` ends it."""
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
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth
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
        yield {
            "api": api,
            "ui": f"http://127.0.0.1:{port}",
            "env": env,
            "root": root,
            "started": started.stdout,
            "auth": auth,
            # The operator's settings for runs: the store and exports live outside the repository.
            "run_env": {**env, "REER_DB": str(root / "reer.duckdb"), "REER_OUT": str(root / "out")},
        }
    finally:
        subprocess.run(
            [sys.executable, "-m", "reer.cli", "dashboard", "--stop"], env=env, capture_output=True, timeout=60
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server without an auth string."""
    with dashboard_server(tmp_path_factory.mktemp("dashboard")) as started:
        yield started


@pytest.fixture(scope="module")
def published(server):
    """`reer deploy`, a process worker on the pool, and one run of publish-nightly on the crafted store."""
    root, env = server["root"], server["env"]
    deployed = reer(["deploy"], env)
    log = open(root / "worker.log", "wb")  # noqa: SIM115 (the worker writes it until the fixture ends)
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "reer", "--limit", "1"],
        cwd=REPO,
        env=server["run_env"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # A change the allow-list admits (publish reads neither): the run is still created through the API.
        flow_run = run_deployment(
            server, {"run_id": "run-1", "options": {"search": {"seed": 1}, "snapshot_seconds": 0}}
        )
        yield {"flow_run": flow_run, "deployed": deployed.stdout, "worker_log": root / "worker.log"}
    finally:
        stop_group(worker)
        log.close()


@contextmanager
def prefect_settings(server):
    """Prefect's client settings for the test's server (with its auth string, if it has one)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: server["api"]}
    if server["auth"]:
        updates[PREFECT_API_AUTH_STRING] = server["auth"]
    with temporary_settings(updates=updates):
        yield


def run_deployment(server, parameters: dict, name: str = "publish/publish-nightly"):
    """A run of a deployment created through the API, as a user or a script would; waits until it ends."""
    from prefect.deployments import run_deployment as run

    with prefect_settings(server):
        return run(name, timeout=300, poll_interval=2, parameters=parameters)


@contextmanager
def api_client(server):
    """A Prefect client for the test's server."""
    from prefect.client.orchestration import get_client

    with prefect_settings(server), get_client(sync_client=True) as client:
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


# Headless Chromium that reaches nothing but the page it is given.
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def browse(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (or, with `screenshot`, a PNG of it), from headless Chromium."""
    command = [
        chromium_binary(),
        *HEADLESS,
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


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,prefect-csrf-token,prefect-csrf-client",
}


def test_pages_of_other_origins_may_not_call_the_api(server):
    import httpx

    api, ui = server["api"], server["ui"]
    evil = httpx.options(f"{api}/flow_runs/filter", headers={"Origin": "http://evil.example", **PREFLIGHT})
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    # A plain GET is answered, but without the header a browser keeps the answer from the page.
    read = httpx.get(f"{api}/admin/version", headers={"Origin": "http://evil.example"})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
    for origin in (ui, ui.replace("127.0.0.1", "localhost")):
        own = httpx.options(f"{api}/flow_runs/filter", headers={"Origin": origin, **PREFLIGHT})
        assert own.status_code == 200 and own.headers["access-control-allow-origin"] == origin
    assert httpx.get(f"{ui}/ui-settings").json()["csrf_enabled"] is True


def test_a_change_without_a_csrf_token_is_refused(server):
    import httpx

    api = server["api"]
    created = httpx.post(f"{api}/flows/", json={"name": "csrf-probe"}, headers={"Origin": "http://evil.example"})
    assert created.status_code == 403 and created.json() == {"detail": "Missing CSRF token."}
    # A form post needs no preflight: only the missing token stops it.
    form = httpx.post(f"{api}/flows/", content='{"name": "csrf-probe"}', headers={"Content-Type": "text/plain"})
    assert form.status_code == 403 and form.json() == {"detail": "Missing CSRF token."}
    with api_client(server) as client:
        assert "csrf-probe" not in {flow.name for flow in client.read_flows()}


def test_an_api_run_that_moves_models_or_paths_fails_in_one_line(server, published):
    outside = server["root"] / "outside"
    served = run_deployment(
        server, {"run_id": "run-1", "options": {"backend": "served", "generator_url": "http://elsewhere"}}
    )
    moved = run_deployment(server, {"run_id": "run-1", "options": {"db": str(outside / "x.duckdb")}})
    log = wait_for_text(published["worker_log"], "Engine execution exited", count=2)
    assert served.state.is_failed() and moved.state.is_failed(), log[-3000:]
    assert "RunRefused: options.backend, options.generator_url: only the deployment's own parameters" in (
        served.state.message
    )
    assert f"RunRefused: options.db: {str(outside / 'x.duckdb')!r} resolves to" in moved.state.message
    assert f"outside the deployment's folder {REPO}" in moved.state.message
    assert all("\n" not in run.state.message for run in (served, moved))
    assert log.count("RunRefused") == 2 and "Traceback" not in log  # the worker's log says it in lines, too
    assert not outside.exists()


def wait_for_text(path: Path, text: str, count: int = 1, timeout: float = 30) -> str:
    """A log's content once `text` is in it `count` times (the worker relays a run's output a little later)."""
    deadline = time.monotonic() + timeout
    while (content := path.read_text(errors="replace")).count(text) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    return content


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A second server, started with PREFECT_API_AUTH_STRING set."""
    auth = f"reer:{secrets.token_hex(12)}"
    with dashboard_server(tmp_path_factory.mktemp("dashboard-auth"), auth=auth) as started:
        yield started


def wait_for_deployment(server, name: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait until `name` exists on the server (`reer serve` creates it); fail if the process ends first."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with api_client(server) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"reer serve exited: {log.read_text(errors='replace')[-3000:]}"
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                time.sleep(1)
    pytest.fail(f"{name} did not appear within {timeout:.0f} s: {log.read_text(errors='replace')[-3000:]}")


def test_with_an_auth_string_only_clients_that_send_it_get_in(auth_server, tmp_path):
    import httpx

    from reer.deployments import server_answers

    api, root, secret = auth_server["api"], auth_server["root"], auth_server["auth"]
    assert "its login asks for your PREFECT_API_AUTH_STRING" in auth_server["started"]
    assert httpx.get(f"{api}/admin/version").status_code == 401
    assert httpx.get(f"{api}/csrf-token", params={"client": "probe"}).status_code == 401  # no token, no change
    assert server_answers(api)  # the health check stays open: reer's own, and probes
    log_path = root / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "reer.cli", "serve", "publish-nightly"],
            cwd=REPO,
            env=auth_server["run_env"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_deployment(auth_server, "publish/publish-nightly", serve, log_path)
        flow_run = run_deployment(auth_server, {"run_id": "run-1"})
    finally:
        stop_group(serve)
    assert flow_run.state.is_completed(), log_path.read_text(errors="replace")[-3000:]
    deployed = reer(["deploy", "publish-nightly"], auth_server["env"])
    assert "deployed publish-nightly" in deployed.stdout
    login, page = browse_logged_in(
        auth_server["ui"],
        f"{auth_server['ui']}/runs/flow-run/{flow_run.id}",
        secret,
        tmp_path / "chromium-profile",
        ["publish-run-1", "Completed"],
    )
    assert "Login" in login and "publish-run-1" not in login
    assert "publish-run-1" in page and "Completed" in page, page[:1500]
    outputs = auth_server["started"] + deployed.stdout + deployed.stderr
    leaked = [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert secret not in outputs and not leaked, leaked


def browse_logged_in(ui: str, url: str, auth: str, profile: Path, expected: list[str]) -> tuple[str, str]:
    """The dashboard's first page, then `url`'s text after logging in with `auth`, in headless Chromium.

    Driven over Chromium's DevTools protocol: the login form is typed into and submitted as a
    user would, which --dump-dom cannot do.
    """
    import httpx
    from websockets.sync.client import connect

    process = subprocess.Popen(
        [
            chromium_binary(),
            *HEADLESS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.5)
        port = port_file.read_text().split()[0]
        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as socket_:
            calls = iter(range(1, 1_000_000))

            def call(method: str, **params) -> dict:
                ident = next(calls)
                socket_.send(json.dumps({"id": ident, "method": method, "params": params}))
                while (message := json.loads(socket_.recv(timeout=60))).get("id") != ident:
                    pass
                return message.get("result", {})

            def evaluate(expression: str):
                return call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

            def text_with(words: list[str], timeout: float = 60) -> str:
                deadline = time.monotonic() + timeout
                while True:
                    text = evaluate("document.body ? document.body.innerText : ''") or ""
                    if all(w in text for w in words) or time.monotonic() > deadline:
                        return re.sub(r"\s+", " ", text)
                    time.sleep(0.5)

            call("Page.navigate", url=ui)
            login = text_with(["Login"])
            evaluate("document.querySelector('input[type=password]').focus()")
            call("Input.insertText", text=auth)
            evaluate("document.querySelector('button[type=submit]').click()")
            text_with(["Dashboard"])
            call("Page.navigate", url=url)
            return login, text_with(expected)
    finally:
        stop_group(process)
