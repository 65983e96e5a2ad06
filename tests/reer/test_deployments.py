"""`reer dashboard --stop`: it signals only a Prefect server it started, never a stale pid's process."""

from __future__ import annotations

import subprocess

import pytest

from reer import deployments
from reer.deployments import stop_server


@pytest.fixture
def signals(monkeypatch):
    """Every killpg stop_server attempts, recorded instead of sent."""
    sent: list[int] = []
    monkeypatch.setattr(deployments.os, "killpg", lambda pid, sig: sent.append(pid))
    return sent


@pytest.mark.parametrize("content", ["", "  \n", "garbage", "-5", "0"])
def test_an_empty_or_garbage_pid_file_is_refused_and_removed(tmp_path, signals, capsys, content):
    pid_path = tmp_path / "prefect-server.pid"
    pid_path.write_text(content)
    assert stop_server(pid_path) is False
    assert signals == [] and not pid_path.exists()
    assert "pid file" in capsys.readouterr().err


def test_a_stale_pid_of_another_process_is_not_signalled(tmp_path, signals, capsys):
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        pid_path = tmp_path / "prefect-server.pid"
        pid_path.write_text(str(sleeper.pid))
        assert stop_server(pid_path) is False
        assert signals == [] and not pid_path.exists()
        assert sleeper.poll() is None  # still running
        assert "not running" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_missing_pid_file_is_no_server(tmp_path, signals):
    assert stop_server(tmp_path / "prefect-server.pid") is False and signals == []


def test_a_prefect_server_pid_is_signalled(tmp_path, signals, monkeypatch):
    pid_path = tmp_path / "prefect-server.pid"
    pid_path.write_text("4242")
    monkeypatch.setattr(deployments, "command_line", lambda pid: ["python", "-m", "prefect", "server", "start"])
    assert stop_server(pid_path) is True
    assert signals == [4242] and not pid_path.exists()


def test_the_server_allows_only_its_own_origins_and_wants_csrf_tokens(monkeypatch):
    monkeypatch.setenv("PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS", "*")  # a stray setting would win otherwise
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    env = deployments.server_env(4321)
    origins = "http://127.0.0.1:4321,http://localhost:4321"
    assert env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == env["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"] == origins
    assert env["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == env["PREFECT_SERVER_CSRF_PROTECTION_ENABLED"] == "true"
    assert "PREFECT_SERVER_API_AUTH_STRING" not in env


def test_the_users_auth_string_is_the_servers(monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:client-secret")
    assert deployments.server_env(4321)["PREFECT_SERVER_API_AUTH_STRING"] == "admin:client-secret"
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "admin:server-secret")  # set on purpose: kept
    assert deployments.server_env(4321)["PREFECT_SERVER_API_AUTH_STRING"] == "admin:server-secret"
