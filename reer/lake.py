"""A store many processes share: DuckLake (a catalog database plus Parquet files), read and written by DuckDB.

`--db ducklake:sqlite:PATH` keeps the catalog in a SQLite file (several processes on one machine);
`--db ducklake:postgres:CONNINFO` keeps it in PostgreSQL (several machines, with the data path on
shared storage). DuckDB opens an in-memory database, loads the extensions from the PyPI wheels
duckdb-ext-* (no network), attaches the lake and makes it the default catalog, so the SQL of sql/
runs unchanged. Importing this module loads no DuckDB: the settings parse store URLs with it.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import duckdb

LAKE_PREFIX = "ducklake:"
CATALOG_NAME = "lake"  # the attached lake's name: current_database() in a lake store
# The catalog kinds, with the DuckDB extension that reads each one and the wheel that ships it.
CATALOG_EXTENSIONS = {"sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}
EXTENSION_WHEELS = {
    "ducklake": "duckdb-ext-ducklake",
    "sqlite_scanner": "duckdb-ext-sqlite",
    "postgres_scanner": "duckdb-ext-postgres",
}
COMMIT_ATTEMPTS = 8  # a transaction that keeps losing commits to other writers fails after this many tries
FIRST_BACKOFF_SECONDS = 0.05  # doubles after each lost commit, with jitter so that two losers part

T = TypeVar("T")


class BadStore(ValueError):
    """A --db / REER_DB value that names no store reer can open."""


class LakeUnavailable(RuntimeError):
    """This DuckDB cannot open a DuckLake store: an extension it needs is missing."""


@dataclass(frozen=True)
class Lake:
    """A DuckLake store: its catalog (a SQLite file or a PostgreSQL conninfo) and the folder of its Parquet files."""

    catalog: str  # sqlite | postgres
    target: str  # the SQLite file (absolute), or the libpq conninfo
    data_path: str | None = None  # None: <catalog>.files/ beside a SQLite file; PostgreSQL: as stored in the lake

    def __str__(self) -> str:
        return f"{LAKE_PREFIX}{self.catalog}:{self.target}"

    def shown(self) -> str:
        """The URL for messages: a password in the conninfo is masked."""
        return masked(str(self))

    def files(self) -> str | None:
        """The folder of the Parquet files this process asks for (None: the one the catalog stored)."""
        if self.data_path:
            return self.data_path
        return f"{self.target}.files/" if self.catalog == "sqlite" else None


def masked(text: str) -> str:
    """`text` with a libpq password (password=...) replaced by ***."""
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.I)


def store_location(value: str | Path | Lake) -> Path | Lake:
    """A plain path stays a DuckDB file; `ducklake:sqlite:PATH` or `ducklake:postgres:CONNINFO` is a lake."""
    if isinstance(value, Lake | Path):
        return value
    text = str(value).strip()
    if not text.startswith(LAKE_PREFIX):
        if re.match(r"^[A-Za-z][\w+.-]*://", text):
            raise BadStore(
                f"{text!r} is not a store: give a DuckDB file, ducklake:sqlite:PATH or ducklake:postgres:CONNINFO"
            )
        return Path(text)
    kind, _, target = text[len(LAKE_PREFIX) :].partition(":")
    if kind not in CATALOG_EXTENSIONS or not target.strip():
        raise BadStore(
            f"{masked(text)!r} is not a DuckLake store: use ducklake:sqlite:PATH or ducklake:postgres:CONNINFO"
        )
    if kind == "sqlite":
        target = str(Path(target).expanduser().resolve())
    return Lake(kind, target.strip())


def with_data_path(location: Path | Lake, data_path: str | Path | None) -> Path | Lake:
    """`location` with the lake's data path set (a DuckDB file has none and stays as it is)."""
    if isinstance(location, Lake) and data_path:
        return replace(location, data_path=str(data_path))
    return location


def is_lake(location: object) -> bool:
    """Whether a store location (or --db text) is a DuckLake store."""
    return isinstance(location, Lake) or str(location).startswith(LAKE_PREFIX)


# --- The schema of sql/ as a lake takes it -------------------------------------------------------
# DuckLake has no PRIMARY KEY, UNIQUE or sequence, and takes only literal defaults (not even
# `false`): the lake's DDL is sql/schema.sql without them, and Store.append supplies what they did
# (key checks, ids, default values). The views and the category taxonomy come from the code's own
# files: a lake connection keeps them as temporary objects, so writers of two reer versions never
# replace each other's views, and opening a store writes no snapshot.


@dataclass
class LakeSchema:
    """sql/ translated for a lake: table DDL, per-connection DDL, and the constraints Store.append enforces."""

    tables: list[str] = field(default_factory=list)  # run by each new writing connection: no-ops once they exist
    temporary: list[str] = field(default_factory=list)  # run on every new connection: categories, views
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> its PRIMARY KEY columns
    defaults: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> DEFAULT expression


_CREATE_TABLE = re.compile(r"^CREATE TABLE(?: IF NOT EXISTS)?\s+(\w+)", re.I)
_ADD_COLUMN = re.compile(r"^ALTER TABLE\s+(\w+)\s+ADD COLUMN(?: IF NOT EXISTS)?\s+(\w+)", re.I)
_TABLE_KEY = re.compile(r",\s*PRIMARY KEY\s*\(([^)]*)\)", re.I)
_COLUMN = re.compile(r"^\s*(\w+)\s+[\w\[\]]+", re.I)
_DEFAULT = re.compile(r"\s+DEFAULT\s+(\w+\('[^']*'\)|'[^']*'|[\w.-]+)", re.I)
_INLINE_KEY = re.compile(r"\s+PRIMARY KEY\b", re.I)


def lake_schema_of(schema: list[str], categories: list[str], views: list[str]) -> LakeSchema:
    """Translate the statements of schema.sql, categories.sql and views.sql for a lake."""
    lake = LakeSchema()
    for statement in schema:
        text = re.sub(r"--[^\n]*", "", statement)  # comments would hide the end of a column's definition
        upper = text.upper()
        if upper.startswith("CREATE SEQUENCE") or "DROP NOT NULL" in upper:
            continue  # no sequences in a lake; a lake is created with today's nullability
        created, added = _CREATE_TABLE.match(text), _ADD_COLUMN.match(text)
        if created:
            name = created[1]
            clause = _TABLE_KEY.search(text)
            if clause:
                lake.keys[name] = tuple(c.strip() for c in clause[1].split(","))
                text = text[: clause.start()] + text[clause.end() :]
            lines = []
            for line in text.splitlines():
                column = _COLUMN.match(line)
                if column and not _CREATE_TABLE.match(line.strip()):
                    if _INLINE_KEY.search(line):
                        lake.keys[name] = (column[1],)
                        line = _INLINE_KEY.sub("", line)
                    default = _DEFAULT.search(line)
                    if default:
                        lake.defaults.setdefault(name, {})[column[1]] = default[1]
                        line = _DEFAULT.sub("", line)
                lines.append(line)
            text = "\n".join(lines)
        elif added:
            default = _DEFAULT.search(text)
            if default:
                lake.defaults.setdefault(added[1], {})[added[2]] = default[1]
                text = _DEFAULT.sub("", text)
        lake.tables.append(text.strip())
    for statement in categories:
        lake.temporary.append(re.sub(r"^CREATE TABLE", "CREATE TEMP TABLE", statement, flags=re.I))
    for statement in views:
        lake.temporary.append(re.sub(r"^CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", statement, flags=re.I))
    return lake


def fill_defaults(
    defaults: dict[str, str], given: set[str], evaluate: Callable[[list[str]], list[Any]], rows: list[dict]
) -> list[dict]:
    """Give rows the columns a DEFAULT would have filled: a fresh id for nextval, else the expression's value."""
    missing = {c: e for c, e in defaults.items() if c not in given}
    if not missing or not rows:
        return rows
    numbered = [c for c, e in missing.items() if e.lower().startswith("nextval(")]
    evaluated = [c for c in missing if c not in numbered]
    values = dict(zip(evaluated, evaluate([missing[c] for c in evaluated]))) if evaluated else {}
    # No sequences in a lake: a random 63-bit id is unique among writers that share no counter.
    return [{**row, **values, **{c: random.getrandbits(63) for c in numbered}} for row in rows]


# --- Opening a lake in DuckDB --------------------------------------------------------------------


def extension_file(con: duckdb.DuckDBPyConnection, name: str) -> Path:
    """The extension file that the duckdb-ext-* wheel installed for this DuckDB; LakeUnavailable if none."""
    import duckdb

    version = duckdb.__version__
    platform = con.execute("PRAGMA platform").fetchone()[0]
    relative = Path("duckdb_ext", "extensions", f"v{version}", platform, f"{name}.duckdb_extension")
    for folder in sys.path:
        candidate = Path(folder or ".") / relative
        if candidate.is_file():
            return candidate
    raise LakeUnavailable(
        f"a DuckLake store needs the DuckDB extension {name} for DuckDB {version} ({platform}), and none is installed: "
        f"pip install duckdb==1.4.4 {EXTENSION_WHEELS[name]}==1.4.4.20260205 (the wheels exist for DuckDB 1.4.4 only)"
    )


def attach_statement(lake: Lake, read_only: bool) -> str:
    """The ATTACH that opens `lake` as the catalog named CATALOG_NAME."""
    from reer.store import sql_string

    options = []
    if lake.files() and not read_only:
        options.append(f"DATA_PATH {sql_string(lake.files())}")
    if read_only:
        options.append("READ_ONLY")
    suffix = f" ({', '.join(options)})" if options else ""
    return f"ATTACH {sql_string(str(lake))} AS {CATALOG_NAME}{suffix}"


def attach(con: duckdb.DuckDBPyConnection, lake: Lake, read_only: bool = False) -> None:
    """Load the extensions from their wheels, attach the lake and make it the default catalog."""
    import duckdb

    for name in ("ducklake", CATALOG_EXTENSIONS[lake.catalog]):
        con.execute(f"LOAD '{extension_file(con, name)}'")
    if lake.catalog == "sqlite":
        if read_only and not Path(lake.target).exists():
            raise FileNotFoundError(f"no reer store at {lake.shown()} (run `reer run` first, or pass --db)")
        Path(lake.target).parent.mkdir(parents=True, exist_ok=True)
        if not read_only:
            Path(lake.files()).mkdir(parents=True, exist_ok=True)
    try:
        retry_commits(lambda: con.execute(attach_statement(lake, read_only)))
    except duckdb.Error as error:
        raise LakeUnavailable(
            f"cannot open the DuckLake store {lake.shown()}: {masked(str(error).strip().splitlines()[0])}"
        ) from None
    con.execute(f"USE {CATALOG_NAME}")


def lock_down(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """A reader's connection: it reads the lake's files and no others, and can change no setting."""
    from reer.store import sql_string

    files = con.execute(f"SELECT value FROM {CATALOG_NAME}.options() WHERE option_name = 'data_path'").fetchone()
    if files:
        con.execute(f"SET allowed_directories = [{sql_string(files[0])}]")
    if lake.catalog == "sqlite":
        con.execute(f"SET allowed_paths = [{sql_string(lake.target)}]")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def is_commit_conflict(error: BaseException) -> bool:
    """Whether a transaction lost its commit to another writer of the lake (worth trying again)."""
    text = str(getattr(error, "orig", None) or error).lower()
    return any(
        sign in text
        for sign in (
            "failed to commit ducklake transaction",
            "database is locked",
            "conflict",
            "failed to initialize ducklake",
        )
    )


def retry_commits(work: Callable[[], T], attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run `work`; while it loses its commit to another writer, run it again after a short, growing wait."""
    wait = FIRST_BACKOFF_SECONDS
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as error:
            if attempt == attempts or not is_commit_conflict(error):
                raise
        time.sleep(wait * random.uniform(0.5, 1.5))
        wait = min(wait * 2, 2.0)
    raise AssertionError("unreachable")  # the loop returns or raises


@cache
def lake_schema() -> LakeSchema:
    """sql/ as a lake takes it (parsed once per process)."""
    from reer.sql import read_sql
    from reer.store import _statements

    return lake_schema_of(*(_statements(read_sql(name)) for name in ("schema", "categories", "views")))


def prepare_connection(con: duckdb.DuckDBPyConnection, lake: Lake, read_only: bool = False) -> None:
    """Attach the lake; a writer creates its tables if new; every connection gets the views and categories."""
    attach(con, lake, read_only)
    schema = lake_schema()
    if not read_only:

        def create_tables() -> None:
            con.execute("BEGIN")
            try:
                for statement in schema.tables:
                    con.execute(statement)
                con.execute("COMMIT")
            except BaseException:
                with suppress(Exception):  # a failed COMMIT has ended the transaction already
                    con.execute("ROLLBACK")
                raise

        retry_commits(create_tables)
    for statement in schema.temporary:
        con.execute(statement)


def compact(con: duckdb.DuckDBPyConnection, older_than_seconds: float) -> dict[str, int]:
    """Merge the lake's small Parquet files; expire snapshots and delete unused files older than the given age."""
    from reer.store import sql_string

    name = sql_string(CATALOG_NAME)
    files = f"SELECT coalesce(sum(file_count), 0) FROM ducklake_table_info({name})"
    before = con.execute(files).fetchone()[0]
    age = f"now() - to_microseconds({round(older_than_seconds * 1e6)})"
    con.execute(f"CALL ducklake_merge_adjacent_files({name})")
    con.execute(f"CALL ducklake_expire_snapshots({name}, older_than => {age})")
    con.execute(f"CALL ducklake_cleanup_old_files({name}, older_than => {age})")
    after = con.execute(files).fetchone()[0]
    return {"data_files_before": int(before), "data_files_after": int(after)}
