"""Other processes, as far as reer needs to know them: what command a pid runs."""

from __future__ import annotations

import subprocess
from pathlib import Path


def command_line(pid: int) -> list[str]:
    """The arguments process `pid` runs with (Linux's /proc, else `ps`); empty if it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    try:  # no /proc (macOS): ps gives the command as one line, split on spaces
        shown = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return []
    return shown.stdout.split()
