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
