"""`reer run --workers 2` on a real two-node Ray cluster (loopback) with the real model: each trajectory is searched
once, the revisions are a single-process run's, a worker killed mid-run costs nothing, and the shared store
takes an ingest and answers SQL while the workers write it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reer.store import read_only_query
from tests.conftest import HOME, short_eqbench_items
from tests.postgres_server import PostgresMissing, local_postgres

pytestmark = [pytest.mark.model, pytest.mark.prefect, pytest.mark.ray]
pytest.importorskip("prefect_ray", reason="the cluster extra is not installed: pip install -e '.[cluster]'")

ITEMS = 8
# Small enough for two cores: one refinement step of short rewrites; float32 so that scores compare exactly.
SEARCH = dict(
    max_initial_tokens=96,
    max_refine_tokens=24,
    max_steps=1,
    k=2,
    seed=1,
    min_thinking_tokens=40,
    initial_retries=0,
    refine_retries=0,
)
REVISION_FIELDS = (
    "revision_id, trajectory_id, parent_id, kind, step, segment_index, candidate_index, status, accepted, thinking"
)
OUTCOME_FIELDS = "trajectory_id, status, reason, final_revision_id, steps, accepted_edits"
SCORE_TOLERANCE = 1e-5  # float32 sums over other batch shapes may move in the last bits (README "Crashes")
HOLD_SECONDS = 300  # longest wait for a worker to reach its first stored batch


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> Path:
    return short_eqbench_items(tmp_path_factory.mktemp("items"), count=ITEMS)


@pytest.fixture(scope="module")
def ray_cluster():
    """Two Ray nodes on this machine, one CPU each, so each shard runs on a node of its own; stopped after."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def options(db: str, tmp: Path, **more) -> dict:
    return {"db": db, "out": str(tmp / "out"), "dtype": "float32", "home": str(HOME), "search": SEARCH, **more}


def searched(db: str, tmp: Path, items: Path, workers: int = 1, **more):
    """Ingest the items without a model (categories cost minutes here), then search what is pending."""
    from reer.flows.ingest import ingest
    from reer.flows.synthesize import synthesize

    ingest(inputs=[str(items)], options=options(db, tmp, **more), use_model=False)
    return synthesize(options=options(db, tmp, **more), from_store=True, workers=workers)


def rows(db: str, sql: str, **params) -> list[dict]:
    return read_only_query(db, sql, **params).to_dicts()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, items) -> str:
    """One process, one worker: what the sharded runs must store."""
    tmp = tmp_path_factory.mktemp("reference")
    db = f"ducklake:sqlite:{tmp / 'lake.sqlite'}"
    searched(db, tmp, items)
    return db


def assert_searched_once_as_reference(db: str, reference: str) -> None:
    """One outcome per trajectory, no revision twice, and every revision and outcome the single process's."""
    outcomes = rows(db, f"SELECT {OUTCOME_FIELDS} FROM outcomes")
    assert len(outcomes) == len({o["trajectory_id"] for o in outcomes}) == ITEMS
    revisions = rows(db, f"SELECT {REVISION_FIELDS}, score FROM revisions")
    assert len(revisions) == len({r["revision_id"] for r in revisions})
    expected = {r["revision_id"]: r for r in rows(reference, f"SELECT {REVISION_FIELDS}, score FROM revisions")}
    assert sorted(expected) == sorted(r["revision_id"] for r in revisions)
    for revision in revisions:
        want = expected[revision["revision_id"]]
        score, want_score = revision.pop("score"), want.pop("score")
        assert revision == want
        assert (score is None) == (want_score is None) and (score is None or abs(score - want_score) <= SCORE_TOLERANCE)
    assert sorted(map(repr, outcomes)) == sorted(map(repr, rows(reference, f"SELECT {OUTCOME_FIELDS} FROM outcomes")))
    (run,) = rows(db, "SELECT status FROM run_overview WHERE flow_name = 'synthesize'")
    assert run["status"] == "completed"


def test_two_workers_on_a_postgres_lake_store_what_one_process_does(tmp_path, items, reference, ray_cluster):
    try:
        server = local_postgres()
        conninfo = server.__enter__()
    except PostgresMissing as missing:
        pytest.skip(str(missing))
    try:
        db = f"ducklake:postgres:{conninfo}"
        summary = searched(db, tmp_path, items, workers=2, ray_address=ray_cluster, lake_data_path=str(tmp_path / "pg"))
        assert summary.items == ITEMS
        assert_searched_once_as_reference(db, reference)
    finally:
        server.__exit__(None, None, None)


def reer_cli(*args: str, db: str) -> subprocess.CompletedProcess:
    """`reer ARGS --db DB` in a process of its own, without the test's kill points."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REER_HOLD") and k != "REER_KILL_AT"}
    env["REER_HOME"] = str(HOME)
    return subprocess.run(
        [sys.executable, "-m", "reer.cli", *args, "--db", db], env=env, capture_output=True, text=True, timeout=300
    )


def held_workers(flag: Path) -> list[int]:
    """The Ray workers that hold at the kill point: the processes whose environment names this test's flag file."""
    marker = f"REER_HOLD_FILE={flag}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def test_a_killed_worker_costs_nothing_while_ingest_and_sql_use_the_sqlite_lake(
    tmp_path, items, reference, ray_cluster, monkeypatch
):
    db = f"ducklake:sqlite:{tmp_path / 'lake.sqlite'}"
    flag = tmp_path / "hold"
    flag.touch()
    # Every worker holds right after its first stored batch while the flag exists: the run is provably mid-way.
    monkeypatch.setenv("REER_HOLD_AT", "stored:1")
    monkeypatch.setenv("REER_HOLD_FILE", str(flag))
    more = tmp_path / "more.jsonl"
    more.write_text('{"query": "Write a note.", "reference": "A first paragraph.\\n\\nA second one."}\n')
    seen: dict = {}

    def meanwhile() -> None:
        try:
            held = flag.with_name(flag.name + ".held")
            deadline = time.monotonic() + HOLD_SECONDS
            while not held.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            seen["held"] = held.exists()
            seen["ingest"] = reer_cli("ingest", str(more), "--no-model", db=db)
            seen["sql"] = reer_cli("sql", "SELECT count(*) AS n FROM revisions", db=db)
            seen["killed"] = held_workers(flag)[:1]
            for pid in seen["killed"]:
                os.kill(pid, signal.SIGKILL)
        finally:
            flag.unlink(missing_ok=True)  # the other worker, and the killed one's retry, go on

    helper = threading.Thread(target=meanwhile)
    helper.start()
    try:
        summary = searched(db, tmp_path, items, workers=2, ray_address=ray_cluster)
    finally:
        flag.unlink(missing_ok=True)
        helper.join()
    assert seen["held"], "no worker reached its first stored batch"
    assert seen["ingest"].returncode == 0, seen["ingest"].stderr[-2000:]
    assert seen["sql"].returncode == 0, seen["sql"].stderr[-2000:]
    assert seen["killed"], "no held worker process was found to kill"
    assert summary.items == ITEMS
    assert_searched_once_as_reference(db, reference)
    statuses = rows(db, "SELECT DISTINCT status FROM run_events WHERE run_id = $run", run=summary.run_id)
    assert "crashed" not in {s["status"] for s in statuses}  # the ingest beside it took it for no dead run
    (ingested,) = rows(db, "SELECT count(*) AS n FROM examples")
    assert ingested["n"] == ITEMS + 1  # the items and the note ingested mid-run
