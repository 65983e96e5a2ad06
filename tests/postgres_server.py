"""A throwaway PostgreSQL server from this machine's own installation, for the lake tests and bench/store.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresMissing(RuntimeError):
    """No PostgreSQL server can be started here."""


def postgres_binaries() -> Path | None:
    """The folder of pg_ctl and initdb (Debian's postgresql package), or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_postgres() -> Iterator[str]:
    """Start a server in a temporary folder on a free loopback port; yield its libpq conninfo; stop and delete it."""
    binaries = postgres_binaries()
    if binaries is None:
        raise PostgresMissing("no PostgreSQL here (pg_ctl and initdb: Debian's postgresql package)")
    as_user: list[str] = []
    # Not under pytest's folder: PostgreSQL's own user (below) cannot pass through root's private one.
    folder = Path(tempfile.mkdtemp(prefix="reer-postgres-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: its own system user runs it
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            shutil.rmtree(folder)
            raise PostgresMissing("PostgreSQL cannot run as root, and there is no postgres user to run it")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    try:
        subprocess.run(
            [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", f"-p {port} -h 127.0.0.1 -k {folder}"]
            + ["-l", str(folder / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
        try:
            yield f"dbname=postgres host=127.0.0.1 port={port} user=postgres"
        finally:
            stop = [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            subprocess.run(stop, capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
