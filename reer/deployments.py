"""Prefect server, work pools and deployments: what `reer dashboard`, `reer deploy` and `reer serve` do.

prefect.yaml is the one description of reer's deployments: `reer deploy` hands it to
`prefect deploy --all` (runs go through a work pool and a worker); `reer serve` builds the same
deployments in-process and serves them with `prefect.serve` (no pool, no worker).
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from reer.console import notice
from reer.processes import command_line

DEFAULT_PORT = 4200
PREFECT_YAML = "prefect.yaml"
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


class ServerError(RuntimeError):
    """The Prefect server is missing, or did not come up."""


class DeployError(RuntimeError):
    """`prefect deploy` or the work pool set-up failed."""


def project_dir() -> Path:
    """The folder holding prefect.yaml: the current one if it has it, else the checkout reer runs from."""
    for folder in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (folder / PREFECT_YAML).exists():
            return folder
    raise DeployError(f"no {PREFECT_YAML} here or in reer's checkout; run this from the reer repository")


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile, if set."""
    from prefect.settings import PREFECT_API_URL

    return os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or None


def api_url(port: int | None = None) -> str:
    """The API to use: the given loopback port, else the configured URL, else 127.0.0.1:4200."""
    if port is None:
        configured = configured_api_url()
        if configured:
            return configured.rstrip("/")
        port = DEFAULT_PORT
    return f"http://127.0.0.1:{port}/api"


def ui_url(api: str) -> str:
    """The dashboard's address for an API address (the UI is served beside /api)."""
    return api.rstrip("/").removesuffix("/api")


def port_of(api: str) -> int:
    return urlparse(api).port or DEFAULT_PORT


def server_answers(api: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect server answers its health check at `api`."""
    import httpx

    try:
        return httpx.get(f"{api.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def prefect_env(api: str, cwd: Path | None = None) -> dict[str, str]:
    """The environment for Prefect commands aimed at `api` (PWD too: prefect.yaml's pull step reads it)."""
    env = {**os.environ, **QUIET, "PREFECT_API_URL": api}
    if cwd is not None:
        env["PWD"] = str(cwd)
    return env


def server_command(port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def own_origins(port: int) -> list[str]:
    """The origins the dashboard is opened from: the only ones whose pages may call the API."""
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


def auth_string() -> str | None:
    """The user's PREFECT_API_AUTH_STRING (environment or Prefect profile), which Prefect's clients send."""
    from prefect.settings import get_current_settings

    secret = get_current_settings().api.auth_string
    return os.environ.get("PREFECT_API_AUTH_STRING") or (secret.get_secret_value() if secret else None)


def server_env(port: int) -> dict[str, str]:
    """The server's environment: its dashboard calls this server's API, and other web pages cannot.

    CORS allows only the server's own origins and CSRF protection is on (Prefect's default is any
    origin, no CSRF), so a page the user visits can neither read the API nor change anything
    through it. With an auth string the server also requires it from every client.
    """
    origins = ",".join(own_origins(port))
    env = {
        **os.environ,
        **QUIET,
        "PREFECT_UI_API_URL": api_url(port),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        # Both names of each setting: Prefect takes the first it finds, so a stray one would win.
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": origins,
        "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": origins,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
    }
    secret = auth_string()
    if secret and not env.get("PREFECT_SERVER_API_AUTH_STRING"):
        env["PREFECT_SERVER_API_AUTH_STRING"] = secret
    return env


def start_server(port: int, log_path: Path, pid_path: Path, timeout: float = 120.0) -> subprocess.Popen:
    """Start `prefect server start` on 127.0.0.1 detached from this process; wait until it answers."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            server_command(port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(port),
            start_new_session=True,
        )
    pid_path.write_text(str(process.pid))
    try:
        wait_for_server(api_url(port), process, log_path, timeout)
    except ServerError:
        stop_server(pid_path)  # a server that never answered is no use left running
        raise
    return process


def wait_for_server(api: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Poll the health check until it answers; a server that exits or stays silent is a ServerError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_answers(api):
            return
        if process.poll() is not None:
            raise ServerError(f"the Prefect server exited with code {process.returncode}; its log: {log_path}")
        time.sleep(1)
    raise ServerError(f"the Prefect server did not answer at {api} within {timeout:.0f} s; its log: {log_path}")


def stop_server(pid_path: Path) -> bool:
    """Stop the server `start_server` started (its whole process group); False if none was running.

    An empty or garbled pid file, or a pid that is no longer a Prefect server (the server exited
    and the pid was reused), is removed with one line saying so, and nothing is signalled.
    """
    if not pid_path.exists():
        return False
    text = pid_path.read_text(errors="replace").strip()
    pid_path.unlink()
    if not text.isdigit() or int(text) <= 1:
        notice(f"ignored the pid file {pid_path}: it holds {text[:40]!r}, not a process id (removed it)")
        return False
    pid = int(text)
    if not is_prefect_server(command_line(pid)):
        notice(f"the Prefect server (pid {pid}) is not running; removed the stale pid file {pid_path}")
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def is_prefect_server(args: list[str]) -> bool:
    """Whether a command line is `prefect server ...` (as `server_command` starts it)."""
    names = [Path(arg).name for arg in args]
    return "prefect" in names and "server" in names


def prefect_cli(args: list[str], api: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one `prefect` command against `api`, from `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=cwd,
        env=prefect_env(api, cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def deployment_specs(project: Path | None = None) -> list[dict]:
    """The deployments prefect.yaml describes."""
    import yaml

    project = project or project_dir()
    config = yaml.safe_load((project / PREFECT_YAML).read_text(encoding="utf-8")) or {}
    return list(config.get("deployments") or [])


def ensure_pools(api: str, project: Path) -> list[str]:
    """Create every `process` work pool prefect.yaml names that the server lacks; returns those created."""
    created = []
    for name in dict.fromkeys(d["work_pool"]["name"] for d in deployment_specs(project) if d.get("work_pool")):
        if prefect_cli(["work-pool", "inspect", name], api, project).returncode == 0:
            continue
        result = prefect_cli(["work-pool", "create", name, "--type", "process"], api, project)
        if result.returncode != 0:
            raise DeployError(f"could not create work pool {name!r}: {last_line(result)}")
        created.append(name)
    return created


def deploy(api: str, names: list[str] | None = None) -> list[str]:
    """Create the work pools and deployments of prefect.yaml on the server at `api`; returns the deployed names."""
    project = project_dir()
    specs = deployment_specs(project)
    known = [d["name"] for d in specs]
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise DeployError(f"no deployment {', '.join(unknown)} in {PREFECT_YAML} (it has {', '.join(known)})")
    ensure_pools(api, project)
    selection = [arg for n in names for arg in ("--name", n)] if names else ["--all"]
    result = prefect_cli(["--no-prompt", "deploy", *selection], api, project)
    if result.returncode != 0:
        raise DeployError(f"prefect deploy failed: {last_line(result)}")
    return names or known


def flow_of(entrypoint: str):
    """The flow object behind a prefect.yaml entrypoint (flows/x.py:fn is reer.flows.x:fn once installed)."""
    path, name = entrypoint.split(":")
    module = "reer." + path.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), name)


def runner_deployments(names: list[str] | None = None) -> list:
    """prefect.yaml's deployments as in-process runner deployments, for `prefect.serve`."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    deployments = []
    for spec in deployment_specs():
        if names and spec["name"] not in names:
            continue
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone") or "UTC") for s in spec.get("schedules") or [] if s.get("cron")
        ]
        deployments.append(
            flow_of(spec["entrypoint"]).to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                parameters=spec.get("parameters") or {},
                schedules=schedules,
                tags=spec.get("tags") or [],
                # By module, not file: served runs import the installed reer from any folder.
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments
