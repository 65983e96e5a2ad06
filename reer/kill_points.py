"""Named kill points, so tests can prove that a crash anywhere loses nothing.

REER_KILL_AT=point:n kills this process (SIGKILL, as a power cut would) on its n-th pass
through `point`. REER_HOLD_AT=point:n holds it there while the file REER_HOLD_FILE exists,
so a test can act on a run that is provably mid-way; while it holds, REER_HOLD_FILE.held
exists. Without either, a kill point costs two dictionary lookups.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

# What arms the kill points; a process that starts workers (Ray) hands them on, so a test can kill a worker.
KILL_POINT_VARIABLES = ("REER_KILL_AT", "REER_HOLD_AT", "REER_HOLD_FILE")
_hits: Counter[str] = Counter()


def _target(variable: str) -> tuple[str, int] | None:
    point, _, nth = os.environ.get(variable, "").rpartition(":")
    return (point, int(nth)) if point and nth.isdigit() else None


def kill_point(point: str) -> None:
    """Count a pass through `point`; die or hold there when the environment says so."""
    kill, hold = _target("REER_KILL_AT"), _target("REER_HOLD_AT")
    if point not in {kill and kill[0], hold and hold[0]}:
        return
    _hits[point] += 1
    if kill == (point, _hits[point]):
        os.kill(os.getpid(), signal.SIGKILL)
    if hold == (point, _hits[point]):
        flag = Path(os.environ["REER_HOLD_FILE"])
        held = flag.with_name(flag.name + ".held")
        held.touch()
        while flag.exists():
            time.sleep(0.05)
        held.unlink(missing_ok=True)
