"""How fast `reer --help` and `reer sql` start, against the bare interpreter and an import of Prefect.

Each command runs 5 times in a fresh process; the median is the figure. Writes bench/startup.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
RUNS = 5


def median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def main() -> None:
    import duckdb

    reer = str(Path(sys.executable).with_name("reer"))
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "s.duckdb"
        duckdb.connect(str(db)).close()
        figures = {
            "python -c pass": median_seconds([sys.executable, "-c", "pass"]),
            "python -c 'import prefect'": median_seconds([sys.executable, "-c", "import prefect"]),
            "reer --help": median_seconds([reer, "--help"]),
            "reer sql 'SELECT 1'": median_seconds([reer, "sql", "SELECT 1", "--db", str(db)]),
        }
    base = figures["python -c pass"]
    for name, seconds in figures.items():
        print(f"{name:<28} {seconds:6.3f} s  ({seconds / base:4.1f}x the bare interpreter)")
    (HERE / "startup.json").write_text(json.dumps({"median_of": RUNS, "seconds": figures}, indent=2) + "\n")
    print("wrote bench/startup.json")


if __name__ == "__main__":
    main()
