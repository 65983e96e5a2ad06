"""`reer deploy`, `reer serve` and `reer dashboard`: prefect.yaml's deployments and the Prefect server."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

import typer

from reer.cli.errors import fail, first_line, quiet_prefect, settings_from
from reer.cli.options import Db, Out, Port

if TYPE_CHECKING:
    from reer.settings import Settings


def server_api(port: int | None) -> str:
    """The Prefect API a command talks to; one line if no server answers there."""
    from reer.deployments import api_url, server_answers

    api = api_url(port)
    if not server_answers(api):
        fail(f"no Prefect server answers at {api}; start one with `reer dashboard`")
    return api


def deploy(
    names: list[str] | None = typer.Argument(None, help="deployments to create (default: every one in prefect.yaml)"),
    port: Port = None,
) -> None:
    """Create prefect.yaml's work pool (if missing) and deployments on a running Prefect server."""
    quiet_prefect(False)
    from reer.cli.rendering import out
    from reer.deployments import DeployError
    from reer.deployments import deploy as deploy_all

    api = server_api(port)
    try:
        deployed = deploy_all(api, names or None)
    except DeployError as error:
        fail(str(error))
    console = out()
    for name in deployed:
        console.print(f"deployed {name}", soft_wrap=True, markup=False)
    console.print(
        f"runs start once a worker polls the pool: PREFECT_API_URL={api} prefect worker start --pool reer",
        soft_wrap=True,
        markup=False,
    )


def serve(
    names: list[str] | None = typer.Argument(None, help="deployments to serve (default: every one in prefect.yaml)"),
    port: Port = None,
) -> None:
    """Serve prefect.yaml's deployments from this process: schedules run here, no pool or worker (Ctrl-C stops)."""
    quiet_prefect(False)
    from reer.cli.rendering import out
    from reer.deployments import DeployError, runner_deployments

    api = server_api(port)
    from prefect import serve as serve_deployments
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}):
        try:
            deployments = runner_deployments(names or None)
        except DeployError as error:
            fail(str(error))
        if not deployments:
            fail(f"no deployment named {', '.join(names or [])} in prefect.yaml")
        try:
            serve_deployments(*deployments)
        except KeyboardInterrupt:
            out().print("stopped serving", soft_wrap=True)


def dashboard(
    port: int | None = typer.Option(None, help="serve on 127.0.0.1:PORT (default: PREFECT_API_URL's port, else 4200)"),
    foreground: bool = typer.Option(False, "--foreground", help="run the server in this terminal (Ctrl-C stops it)"),
    stop: bool = typer.Option(False, "--stop", help="stop the server an earlier `reer dashboard` started"),
    db: Db = None,
    out_dir: Out = None,
) -> None:
    """Start the Prefect dashboard on 127.0.0.1 unless one answers; print where it and the latest report are."""
    import subprocess
    from urllib.parse import urlparse

    from reer.cli.rendering import out
    from reer.deployments import (
        ServerError,
        api_url,
        auth_string,
        configured_api_url,
        port_of,
        server_answers,
        server_command,
        server_env,
        start_server,
        stop_server,
        ui_url,
    )

    settings = settings_from(db=db, out=out_dir)
    pid_path, log_path = settings.home / "prefect-server.pid", settings.home / "prefect-server.log"
    console = out()
    if stop:
        stopped = stop_server(pid_path)
        console.print("stopped the dashboard server" if stopped else "no server started by `reer dashboard` is running")
        return
    api = api_url(port)
    running = server_answers(api)
    if not running and urlparse(api).hostname not in ("127.0.0.1", "localhost"):
        fail(f"PREFECT_API_URL is {api}, which does not answer; reer starts servers on 127.0.0.1 only (use --port)")
    if running:
        console.print(f"a Prefect server already answers at {api}", soft_wrap=True, markup=False)
    elif not foreground:
        console.print(
            f"starting the Prefect server on 127.0.0.1:{port_of(api)} (log: {log_path})", soft_wrap=True, markup=False
        )
        try:
            start_server(port_of(api), log_path, pid_path)
        except ServerError as error:
            fail(str(error))
    console.print(f"dashboard: {ui_url(api)}", soft_wrap=True, markup=False)
    if auth_string() and not running:
        # The server started here requires it; say where the secret goes, never what it is.
        console.print("its login asks for your PREFECT_API_AUTH_STRING", soft_wrap=True, markup=False)
    if configured_api_url() != api:
        console.print(f"send runs there: export PREFECT_API_URL={api}", soft_wrap=True, markup=False)
    print_latest_report(settings)
    if not running and not foreground:
        console.print("stop it: reer dashboard --stop", soft_wrap=True)
    if foreground and not running:
        settings.home.mkdir(parents=True, exist_ok=True)
        with suppress(KeyboardInterrupt):
            subprocess.run(server_command(port_of(api)), env=server_env(port_of(api)))


def print_latest_report(settings: Settings) -> None:
    """Where the latest completed run's report is, or how to write it."""
    from functools import partial

    from reer.cli.rendering import out
    from reer.lake import LakeUnavailable
    from reer.store import StoreBusy, read_only_query
    from reer.tasks.report import latest_run, report_path

    console = out()
    try:
        run_id = latest_run(partial(read_only_query, settings.db))
    except (StoreBusy, LakeUnavailable, FileNotFoundError) as error:
        console.print(f"latest report: unknown ({first_line(error)})", soft_wrap=True, markup=False)
        return
    if run_id is None:
        console.print("latest report: none yet (reer run, then reer report)", soft_wrap=True)
        return
    path = report_path(settings.out, run_id)
    if path.exists():
        console.print(f"latest report: {path.resolve().as_uri()}", soft_wrap=True, markup=False)
    else:
        console.print(
            f"latest report: not written yet for run {run_id} (reer report {run_id})", soft_wrap=True, markup=False
        )
