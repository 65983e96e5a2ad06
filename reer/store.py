"""The store: applies sql/ through SQLAlchemy, appends rows, answers read-only queries.

A DuckDB file (the default: one writer, readers get its snapshot) or a DuckLake that many processes
read and write at once (reer/lake.py); the same SQL runs on both.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from reer.console import notice
from reer.kill_points import kill_point
from reer.lake import Lake, fill_defaults, lake_schema, prepare_connection, retry_commits, store_location
from reer.processes import command_line
from reer.sql import read_sql

if TYPE_CHECKING:  # sqlalchemy and polars load when a store is opened or read: `reer sql` starts without them
    import polars as pl
    from sqlalchemy.engine import Connection, Engine

TABLES = (
    "runs",
    "run_events",
    "examples",
    "trajectories",
    "revisions",
    "outcomes",
    "rejects",
    "checks",
    "exports",
    "source_records",
    "validations",
    "controls",
)
KEYED = {"runs", "examples", "trajectories", "revisions", "outcomes"}  # re-inserting a key is a no-op
T = TypeVar("T")


class StoreBusy(RuntimeError):
    """Another process holds the database for writing."""


class UnknownColumns(ValueError):
    """A row names a column its table does not have."""


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def snapshot_path(path: Path) -> Path:
    """Where a run publishes a consistent copy of its database for readers: reer.snapshot.duckdb."""
    path = Path(path)
    return path.with_name(f"{path.stem}.snapshot{path.suffix or '.duckdb'}")


# What `reer sql` and other readers may do: read this file. No file is written or read besides it
# (COPY TO, EXPORT, ATTACH, read_csv), no extension installed or loaded, no setting changed.
READ_ONLY = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
# DuckDB's lock error: `Could not set lock on file "...": Conflicting lock is held in <exe> (PID <n>)`
_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


def is_lock_error(error: BaseException) -> bool:
    """Whether DuckDB refused to open a file because another process holds its lock."""
    text = str(error).lower()
    return "could not set lock" in text or "conflicting lock" in text


def _is_reer(argv: list[str]) -> bool:
    """`reer ...`, `python .../bin/reer ...`, `python -m reer...` or a Prefect worker's flow run."""
    if any(Path(a).name == "reer" for a in argv[:2]):
        return True
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    return module.split(".")[0] == "reer" or module == "prefect.engine"


def _busy_message(path: Path, error: BaseException) -> str:
    holder = _HOLDER.search(str(error))
    if holder is None:
        return (
            f"{path} is open in another process (a reer run, or a program reading it); "
            f"close it or wait for it to finish ({error.__class__.__name__})"
        )
    pid = int(holder["pid"])
    argv = command_line(pid) or [holder["exe"]]
    if _is_reer(argv):
        return (
            f"{path} is held by another reer process (PID {pid}) that is writing to it; wait for that run to finish "
            f"(readers get its snapshot {snapshot_path(path).name}, published after its batches)"
        )
    if len(argv) > 2 and argv[1] == "-c":
        argv = [*argv[:2], "...", *argv[3:]]  # the program's code itself says little
    command = " ".join([Path(argv[0]).name, *argv[1:]])
    command = "".join(c if c.isprintable() else " " for c in command)  # one line, nothing for the terminal
    if len(command) > 200:
        command = command[:197] + "..."
    return f"{path} is open in another process (PID {pid}: {command}); close it or wait for it to finish"


class Store:
    """The writer of one DuckDB file (the only one), or one of many writers of a DuckLake store."""

    def __init__(self, location: Path | Lake | str) -> None:
        from sqlalchemy import column, create_engine, event, table

        location = store_location(location)
        self.lake: Lake | None = location if isinstance(location, Lake) else None
        self.path: Path | None = None if self.lake else Path(location)
        if self.lake:
            lake = self.lake
            # Every connection is an in-memory DuckDB with the lake attached as its default catalog.
            self.engine: Engine = create_engine("duckdb:///:memory:")
            event.listen(self.engine, "connect", lambda raw, _record: prepare_connection(raw, lake))
            with self.engine.connect():
                pass  # the first connection creates the lake's tables: a bad URL fails here, not at the first write
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.engine = create_engine(f"duckdb:///{self.path}")
                with self.engine.begin() as con:
                    scripts = [read_sql("schema"), read_sql("categories"), read_sql("views")]
                    for statement in [s for script in scripts for s in _statements(script)]:
                        con.exec_driver_sql(statement)
                # The schema goes into the file, not the WAL: DuckDB 1.4.4 fails to replay its
                # `ALTER ... DROP NOT NULL` (a table whose key defaults to a sequence) after a kill.
                with self.engine.connect() as con:
                    con.connection.driver_connection.execute("CHECKPOINT")
            except Exception as error:  # duckdb raises IOException through SQLAlchemy's wrapper
                if is_lock_error(error):
                    raise StoreBusy(_busy_message(self.path, error)) from None
                raise
            # This process is the one writer now: a snapshot still here was left by a writer that was
            # killed, and readers would take it for this one's until its first snapshot replaced it.
            snapshot_path(self.path).unlink(missing_ok=True)
        # Lightweight table handles from the catalog: the .sql files stay the only schema
        # (SQLAlchemy's reflection queries pg_catalog types DuckDB does not have).
        with self.engine.connect() as con:
            rows = con.exec_driver_sql(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'main' AND table_catalog = current_database() "
                "ORDER BY table_name, ordinal_position"
            ).all()
        self.tables = {name: table(name, *[column(c) for t, c in rows if t == name]) for name in TABLES}
        self._on_close: list[Callable[[], object]] = []

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: everything written inside lands together or not at all."""
        with self.engine.begin() as con:
            yield con

    def atomically(self, work: Callable[[Connection], T]) -> T:
        """`work` in one transaction; in a lake, run again (a few times) while its commit loses to another writer's."""

        def attempt() -> T:
            with self.transaction() as con:
                return work(con)

        return attempt() if self.lake is None else retry_commits(attempt)

    def append(self, con: Connection, name: str, rows: Iterable[Any]) -> int:
        """Insert rows (dicts or dataclasses) once; rows whose key already exists are left as they are.

        Every key of every row must be a column of the table (UnknownColumns otherwise).
        """
        t = self.tables[name]
        payload = []
        for row in rows:
            data = asdict(row) if is_dataclass(row) else dict(row)
            unknown = sorted(k for k in data if k not in t.c)
            if unknown:  # a renamed field must fail here, not land as NULL
                raise UnknownColumns(f"{name} has no column {', '.join(unknown)}")
            payload.append(
                {
                    k: (json.dumps(v, default=str, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                    for k, v in data.items()
                }
            )
        if not payload:
            return 0
        # A multi-row insert takes its columns from the first row: give every row the same keys.
        keys = {k for data in payload for k in data}
        payload = [{k: data.get(k) for k in keys} for data in payload]
        from sqlalchemy import insert

        if self.lake is not None:
            payload = self._lake_rows(con, name, keys, payload)
            if not payload:
                return 0
            con.execute(insert(t), payload)
            return len(payload)
        statement = insert(t).prefix_with("OR IGNORE") if name in KEYED else insert(t)
        con.execute(statement, payload)
        return len(payload)

    def _lake_rows(self, con: Connection, name: str, given: set[str], payload: list[dict]) -> list[dict]:
        """What a lake adds for lack of constraints: defaults filled in, and for a keyed table only the absent keys."""
        schema = lake_schema()

        def evaluate(expressions: list[str]) -> list[Any]:
            return list(con.exec_driver_sql(f"SELECT {', '.join(expressions)}").one())

        payload = fill_defaults(schema.defaults.get(name, {}), given, evaluate, payload)
        if name not in KEYED:
            return payload
        from sqlalchemy import select

        columns = schema.keys[name]
        fresh: dict[tuple, dict] = {}
        for row in payload:  # the first of two rows with one key wins, as INSERT OR IGNORE keeps the first
            fresh.setdefault(tuple(row.get(c) for c in columns), row)
        t = self.tables[name]
        first = sorted({key[0] for key in fresh}, key=str)
        held = con.execute(select(*[t.c[c] for c in columns]).where(t.c[columns[0]].in_(first))).all()
        for key in held:  # read inside this transaction: a key stored before it began is skipped
            fresh.pop(tuple(key), None)
        return list(fresh.values())

    def write(self, name: str, rows: Iterable[Any]) -> int:
        rows = list(rows)  # a retried transaction reads them again
        return self.atomically(lambda con: self.append(con, name, rows))

    def query(self, sql: str, **params: Any) -> pl.DataFrame:
        """Run a read query on the writer's own connection."""
        with self.engine.connect() as con:
            raw = con.connection.driver_connection  # the duckdb connection under SQLAlchemy
            return raw.sql(sql, params=params or None).pl()

    def publish_snapshot(self) -> Path | None:
        """Copy the database, as of now, to its snapshot file: readers use it while this process writes.

        A lake needs none (None): its readers read it while it is written.
        """
        if self.path is None:
            return None
        target = snapshot_path(self.path)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        # DuckDB copies it: opening the file any other way, even to read it, and closing it again
        # would drop this process's POSIX lock on it and let a second writer in.
        with self.engine.connect() as con:
            raw = con.connection.driver_connection
            source = raw.sql("SELECT current_database()").fetchall()[0][0]
            raw.execute(f"ATTACH {sql_string(str(partial))} AS reer_snapshot")  # ATTACH takes no parameter
            try:
                raw.execute(f"COPY FROM DATABASE {sql_identifier(source)} TO reer_snapshot")
            finally:
                raw.execute("DETACH reer_snapshot")
        kill_point("snapshot")
        os.replace(partial, target)  # readers see the old snapshot or the new one, never half of one
        return target

    def drop_snapshot(self) -> None:
        """The writer is done: readers open the database itself again."""
        if self.path is not None:
            snapshot_path(self.path).unlink(missing_ok=True)

    def compact(self, older_than_seconds: float = 3600.0) -> dict[str, int]:
        """A lake: merge its small Parquet files, drop snapshots and files unused for `older_than_seconds`.

        Readers may still scan files for a while after they stop being current: keep the age above the
        longest read. A DuckDB file needs nothing (an empty dict).
        """
        if self.lake is None:
            return {}
        from reer.lake import compact

        with self.engine.connect() as con:
            raw = con.connection.driver_connection
            return retry_commits(lambda: compact(raw, older_than_seconds))

    def release_on_close(self, release: Callable[[], object]) -> None:
        """Call `release` once the store is closed (a deployment run's turn on it ends then)."""
        self._on_close.append(release)

    def close(self) -> None:
        self.engine.dispose()
        while self._on_close:
            self._on_close.pop()()


def sql_string(text: str) -> str:
    """`text` as a SQL string literal: a path with a quote in it stays one literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def refuse_if_held(path: Path | Lake | str) -> None:
    """StoreBusy at once if another process writes the database: a run refuses before Prefect or a model starts.

    A lake is never held: many processes write it at once.
    """
    location = store_location(path)
    if isinstance(location, Lake):
        return
    path = Path(location)
    if not path.exists():
        return
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as error:
        if is_lock_error(error):
            raise StoreBusy(_busy_message(path, error)) from None
        raise


def read_only_query(path: Path | Lake | str, sql: str, **params: Any) -> pl.DataFrame:
    """Query a store from another process; a clear StoreBusy if a run holds a DuckDB file for writing."""
    location = store_location(path)
    if isinstance(location, Lake):
        return _read_lake(location, sql, params)
    path = Path(location)
    if not path.exists():
        raise FileNotFoundError(f"no reer database at {path} (run `reer run` first, or pass --db)")
    try:
        con = duckdb.connect(str(path), read_only=True, config=READ_ONLY)
    except duckdb.IOException as error:
        if not is_lock_error(error):
            raise
        snapshot = snapshot_path(path)
        if not snapshot.exists():
            raise StoreBusy(_busy_message(path, error)) from None
        con = duckdb.connect(str(snapshot), read_only=True, config=READ_ONLY)
        written = snapshot.stat().st_mtime
        taken, age = time.strftime("%H:%M:%S", time.localtime(written)), max(0, round(time.time() - written))
        notice(
            f"a run is writing {path}; reading its snapshot of {taken}, {age} s old (rows up to its last finished batch)"
        )
    try:
        return con.sql(sql, params=params or None).pl()
    finally:
        con.close()


def _read_lake(lake: Lake, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    """Query a lake read-only: its latest snapshot, whoever writes it meanwhile."""
    from reer.lake import lock_down

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        prepare_connection(con, lake, read_only=True)
        lock_down(con, lake)
        return con.sql(sql, params=params or None).pl()
    finally:
        con.close()
