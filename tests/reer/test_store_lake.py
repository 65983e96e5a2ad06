"""A DuckLake store (`--db ducklake:...`): the same views answer as on a DuckDB file, keyed rows land once,
two processes write one lake at once; on a SQLite catalog and, where PostgreSQL is installed, on a PostgreSQL one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from reer.lake import LakeUnavailable, extension_file, lake_schema
from reer.store import Store, read_only_query
from tests.postgres_server import PostgresMissing, local_postgres
from tests.tasks.crafted import CLEAN, THIRD, fill_store


def _extensions_missing() -> str | None:
    con = duckdb.connect()
    try:
        for name in ("ducklake", "sqlite_scanner", "postgres_scanner"):
            extension_file(con, name)
    except LakeUnavailable as error:
        return str(error)
    finally:
        con.close()
    return None


_MISSING = _extensions_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"no DuckLake here: {_MISSING}")

WRITTEN_AT = "2026-01-01 00:00:00+00"  # every write time, so that two stores' rows compare equal
RUN = "run-1"


def fill(location) -> None:
    """The crafted run, with a row in every table the views read, every write time set to WRITTEN_AT.

    Ids that a sequence numbers in a file and a lake draws at random are given, so that rows compare equal.
    """
    store = fill_store(location, [CLEAN["a"], CLEAN["b"], THIRD], run_id=RUN)
    try:
        store.write(
            "rejects",
            [{"reject_id": 1, "run_id": RUN, "stage": "sourcing", "reason": "malformed_json", "source": "in.jsonl"}],
        )
        store.write(
            "source_records",
            [
                {
                    "run_id": RUN,
                    "source": "in.jsonl",
                    "source_record": "line 1",
                    "status": "loaded",
                    "example_id": "ex-a",
                },
                {"run_id": RUN, "source": "in.jsonl", "source_record": "line 2", "status": "rejected"},
            ],
        )
        store.write("validations", [{"validation_id": "val-1", "run_id": RUN, "examples": 3, "trajectories": 3}])
        store.write(
            "checks",
            [
                {
                    "check_id": n,
                    "run_id": RUN,
                    "trajectory_id": t,
                    "suite": "trajectories",
                    "check_name": name,
                    "passed": t != "traj-b" or name == "repetition",
                    "observed": 0.1,
                    "validation_id": "val-1",
                }
                for n, (t, name) in enumerate(
                    (t, name) for t in ("traj-a", "traj-b", "traj-c") for name in ("repetition", "length")
                )
            ],
        )
        store.write(
            "controls",
            [
                {"run_id": RUN, "trajectory_id": t, "kind": kind, "score": score, "dtype": "float32"}
                for t in ("traj-a", "traj-c")
                for kind, score in (("no_thinking", 1.0), ("other_thinking", 0.95))
            ],
        )
        store.write(
            "exports",
            [
                {
                    "export_id": 1,
                    "run_id": RUN,
                    "trajectory_id": "traj-a",
                    "revision_id": "traj-a-r1",
                    "example_id": "ex-a",
                    "format": "jsonl",
                    "path": "out/run-1.jsonl",
                    "row_index": 0,
                }
            ],
        )
        with store.transaction() as con:
            for table, defaults in lake_schema().defaults.items():
                for column, expression in defaults.items():
                    if expression == "current_timestamp":
                        con.exec_driver_sql(f"UPDATE {table} SET {column} = TIMESTAMPTZ '{WRITTEN_AT}'")
    finally:
        store.close()


def view_names(location) -> list[str]:
    frame = read_only_query(
        location, "SELECT DISTINCT table_name FROM information_schema.tables WHERE table_type = 'VIEW'"
    )
    return sorted(frame["table_name"].to_list())


def rows_of(location, sql: str) -> list[str]:
    """A query's rows as sorted text: two stores may return them in different orders."""
    return sorted(repr(sorted(row.items())) for row in read_only_query(location, sql).to_dicts())


def assert_same_answers(plain: Path, lake: str) -> None:
    views = view_names(plain)
    assert views == view_names(lake) and "run_overview" in views and len(views) >= 10
    for view in views:
        assert rows_of(plain, f"SELECT * FROM {view}") == rows_of(lake, f"SELECT * FROM {view}"), view
    overview = read_only_query(lake, "SELECT * FROM run_overview").to_dicts()
    assert [(r["run_id"], r["status"]) for r in overview] == [(RUN, "completed")]
    assert read_only_query(lake, "SELECT count(*) AS n FROM passed_trajectories")["n"][0] == 2  # traj-b failed a check


def test_every_view_answers_the_same_on_a_file_and_on_a_sqlite_lake(tmp_path):
    plain, lake = tmp_path / "reer.duckdb", f"ducklake:sqlite:{tmp_path / 'lake.sqlite'}"
    fill(plain)
    fill(lake)
    assert_same_answers(plain, lake)
    assert (tmp_path / "lake.sqlite.files").is_dir()  # the Parquet files sit beside the catalog


def test_keyed_rows_written_twice_are_stored_once_and_defaults_are_filled(tmp_path):
    store = Store(f"ducklake:sqlite:{tmp_path / 'lake.sqlite'}")
    try:
        run = {"run_id": "r1", "flow_name": "synthesize"}
        assert store.write("runs", [run, run]) == 1  # a key twice in one batch: the first one
        assert store.write("runs", [run, {"run_id": "r2"}]) == 1  # r1 is held already
        trajectory = {"trajectory_id": "t1", "run_id": "r1", "example_id": "e1"}
        store.write("trajectories", [trajectory])
        store.write("trajectories", [trajectory, {**trajectory, "run_id": "r2"}])  # the key is the pair
        assert store.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"].to_list() == ["r1", "r2"]
        assert store.query("SELECT count(*) AS n FROM trajectories")["n"][0] == 2
        store.write("rejects", [{"stage": "search", "reason": "a"}, {"stage": "search", "reason": "b"}])
        rejects = store.query("SELECT reject_id, created_at FROM rejects")
        assert rejects["reject_id"].null_count() == 0 and rejects["reject_id"].n_unique() == 2
        assert rejects["created_at"].null_count() == 0
        assert store.query("SELECT started_at FROM runs")["started_at"].null_count() == 0
        assert store.publish_snapshot() is None  # readers read the lake itself
    finally:
        store.close()


def test_validation_and_export_on_a_lake_match_a_file(tmp_path):
    from reer.tasks.export import write_export
    from reer.tasks.quality import QualityConfig, validate

    written = {}
    for name, location in (("file", tmp_path / "reer.duckdb"), ("lake", f"ducklake:sqlite:{tmp_path / 'lake.sqlite'}")):
        store = fill_store(location, [CLEAN["a"], CLEAN["b"], THIRD], run_id=RUN)
        try:
            validate(store, RUN, QualityConfig(), None)
            first = write_export(store, RUN, tmp_path / name)
            again = write_export(store, RUN, tmp_path / name)  # the same export again adds no row
            passed = store.query("SELECT trajectory_id FROM passed_trajectories ORDER BY 1")["trajectory_id"]
            exports = store.query("SELECT count(*) AS n, count(DISTINCT export_id) AS ids FROM exports").row(0)
        finally:
            store.close()
        assert again.train_rows == first.train_rows
        written[name] = (passed.to_list(), first.train_rows, first.full_rows, exports)
    assert written["file"] == written["lake"]
    assert written["lake"][3][0] == written["lake"][3][1] > 0  # every export row has its own id


WRITER = """
import sys
from reer.store import Store
url, name, batches, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = Store(url)
for b in range(batches):
    store.write("revisions", [
        {"revision_id": f"{name}-{b}-{i}", "trajectory_id": name, "run_id": "r", "kind": "candidate", "step": b,
         "thinking": "x", "accepted": False, "status": "scored"}
        for i in range(rows)
    ])
store.close()
print("done")
"""


def test_two_processes_append_to_one_sqlite_lake_and_both_finish(tmp_path):
    url = f"ducklake:sqlite:{tmp_path / 'lake.sqlite'}"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, name, "15", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    results = [w.communicate(timeout=240) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], [err[-2000:] for _, err in results]
    counts = read_only_query(
        url, "SELECT trajectory_id, count(DISTINCT revision_id) AS n FROM revisions GROUP BY ALL ORDER BY 1"
    )
    assert counts.to_dicts() == [{"trajectory_id": "a", "n": 300}, {"trajectory_id": "b", "n": 300}]


def test_a_malformed_or_unknown_store_url_is_one_line(tmp_path):
    reer = str(Path(sys.executable).with_name("reer"))
    for bad, says in (
        ("ducklake:mysql:x", "is not a DuckLake store"),
        ("ducklake:sqlite:", "is not a DuckLake store"),
        (f"ducklake:sqlite:{tmp_path / 'none.sqlite'}", "no reer store at"),
    ):
        result = subprocess.run([reer, "sql", "SELECT 1", "--db", bad], capture_output=True, text=True)
        assert result.returncode != 0 and says in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- PostgreSQL as the catalog -------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of this machine's own installation on a free loopback port, stopped after the session."""
    try:
        with local_postgres() as conninfo:
            yield conninfo
    except PostgresMissing as missing:
        pytest.skip(str(missing))


def test_every_view_answers_the_same_on_a_file_and_on_a_postgres_lake(tmp_path, postgres):
    plain = tmp_path / "reer.duckdb"
    files = tmp_path / "lake-files"
    lake = f"ducklake:postgres:{postgres}"
    fill(plain)
    started = time.monotonic()
    from reer.settings import Settings

    fill(Settings(db=lake, lake_data_path=str(files)).db)
    assert time.monotonic() - started < 120
    assert_same_answers(plain, lake)  # readers find the data path in the catalog
    assert any(files.rglob("*.parquet"))
