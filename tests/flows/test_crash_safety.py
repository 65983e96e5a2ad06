"""Crash safety with real processes: `reer run` killed with SIGKILL at many points, interrupted
with Ctrl-C, read and written by other processes while it runs, re-run each time; it must end
exactly as one uninterrupted run does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.conftest import HOME, short_eqbench_items

pytestmark = [pytest.mark.model, pytest.mark.prefect, pytest.mark.crash]

K = 2
SEARCH = [
    "--dtype",
    "float32",
    "--max-steps",
    "3",
    "-k",
    str(K),
    "--max-initial-tokens",
    "200",
    "--max-refine-tokens",
    "64",
    "--seed",
    "1",
]
# Kill points (reer.kill_points.checkpoint names). Before the search: after the inputs are stored,
# after the searches are prepared, between writing a snapshot and publishing it.
BEFORE_SEARCH = ["sourced:1", "prepared:1", "snapshot:1"]
# One cycle per stored batch of the search: inside the batch's transaction, and right after it
# commits (the only point that makes progress). From the second batch on (refinements: cheaper
# than z(0)) a cycle also dies once after its generation returns, and the second batch once
# after its scoring returns; each of those throws that model work away.
SEARCH_CYCLE = ["storing:1", "stored:1"]
# After the search: inside the validation's transaction, after it, between the export files
# and their rows, after the export, and just before the run is marked completed.
AFTER_SEARCH = ["validating:1", "validated:1", "exporting:1", "exported:1", "summarized:1"]
REVISION_FIELDS = "revision_id, trajectory_id, parent_id, kind, step, segment_index, candidate_index, status, accepted, thinking, segment_text"
OUTCOME_FIELDS = "trajectory_id, status, reason, final_revision_id, steps, accepted_edits"
# A resumed run batches fewer items together; fp32 scores may move in the last bits.
SCORE_TOLERANCE = 1e-5


def reer(*args: str, db: Path, api: str, kill_at: str | None = None, wait: bool = True, **extra: str):
    """`reer ARGS --db DB` in a new process, against the test's Prefect server."""
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "REER_HOME": str(HOME),
        "REER_SNAPSHOT_SECONDS": "0.001",
        "REER_OUT": str(db.parent / "out"),
        "REER_SEARCH__MIN_THINKING_TOKENS": "40",
        "REER_TRACEBACK": "1",
        **extra,
    }
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)  # the CLI's own default, as a user has it
    if kill_at:
        env["REER_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "reer.cli", *args, "--db", str(db)]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def query(db: Path, sql: str) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(sql).pl().to_dicts()
    finally:
        con.close()


def table(db: Path, sql: str) -> list[tuple]:
    return sorted(tuple(r.values()) for r in query(db, sql))


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return short_eqbench_items(tmp_path_factory.mktemp("items"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, items, prefect_api):
    """One uninterrupted run: what every interrupted sequence must end as."""
    db = tmp_path_factory.mktemp("reference") / "reer.duckdb"
    done = reer("run", str(items), *SEARCH, db=db, api=prefect_api)
    assert done.returncode == 0, done.stderr[-2000:]
    return db


def assert_same_scores(db: Path, reference: Path) -> None:
    expected = {r["revision_id"]: r["score"] for r in query(reference, "SELECT revision_id, score FROM revisions")}
    for r in query(db, "SELECT revision_id, score FROM revisions"):
        want = expected[r["revision_id"]]
        assert (r["score"] is None) == (want is None), r
        assert r["score"] is None or abs(r["score"] - want) <= SCORE_TOLERANCE, (r, want)


def final_run(db: Path) -> str:
    return query(db, "SELECT run_id FROM run_overview WHERE status = 'completed' ORDER BY started_at DESC LIMIT 1")[0][
        "run_id"
    ]


def assert_consistent(db: Path, reference: Path, point: str) -> None:
    """What must hold after any crash: whole steps, known revisions, whole validations and exports."""
    expected = {r["revision_id"]: r for r in query(reference, f"SELECT {REVISION_FIELDS} FROM revisions")}
    stored = query(db, f"SELECT {REVISION_FIELDS} FROM revisions")
    for r in stored:  # every stored revision is the very one the uninterrupted run made
        assert r == expected.get(r["revision_id"]), f"after a kill at {point}: revision {r['revision_id']} differs"
    assert_same_scores(db, reference)
    partial = query(
        db,
        f"SELECT trajectory_id, step, count(*) AS n FROM revisions WHERE kind = 'candidate' "
        f"GROUP BY ALL HAVING n % {K} <> 0",  # a step whose k rewrites were all unusable is drawn once more: 2k
    )
    assert partial == [], f"after a kill at {point}: half-stored steps {partial}"
    assert (
        query(
            db,
            "SELECT o.trajectory_id FROM outcomes o LEFT JOIN revisions v ON v.revision_id = o.final_revision_id "
            "WHERE o.final_revision_id IS NOT NULL AND v.revision_id IS NULL",
        )
        == []
    )
    assert (
        query(
            db,
            "SELECT v.validation_id FROM validations v LEFT JOIN checks c USING (validation_id) "
            "WHERE v.trajectories > 0 GROUP BY ALL HAVING count(c.check_id) = 0",
        )
        == []
    ), point
    for e in query(db, "SELECT DISTINCT path FROM exports"):
        assert Path(e["path"]).exists(), f"after a kill at {point}: an export row names a missing file"


def test_killed_anywhere_and_rerun_it_ends_as_an_uninterrupted_run(tmp_path, items, reference, prefect_api):
    db = tmp_path / "reer.duckdb"
    expected_outcomes = len(query(reference, "SELECT * FROM outcomes"))
    kills: list[str] = []
    completed_early = cycles = 0
    plan, searched = deque(BEFORE_SEARCH), False
    while True:
        if not plan:
            if searched:
                break
            done = len(query(db, "SELECT * FROM outcomes"))
            searched = done == expected_outcomes
            cycles += 1
            model_calls = ["generated:1", "scored:1"] if cycles == 2 else ["generated:1"] if cycles > 2 else []
            plan.extend(AFTER_SEARCH if searched else model_calls + SEARCH_CYCLE)
        point = plan.popleft()
        result = reer("run", str(items), *SEARCH, db=db, api=prefect_api, kill_at=point)
        if result.returncode == 0:  # what was left of the search had no such point (say, nothing to score)
            completed_early += 1
        else:
            assert result.returncode == -signal.SIGKILL, (
                f"the run was to die at {point}: {result.stdout[-500:]} {result.stderr[-1500:]}"
            )
            kills.append(point)
        assert_consistent(db, reference, point)
    # The same command once more, untouched: it finishes the job.
    last = reer("run", str(items), *SEARCH, db=db, api=prefect_api)
    assert last.returncode == 0, last.stderr[-2000:]
    print(
        f"{len(kills)} kills at {len(set(kills))} distinct points, {completed_early} runs with no such point left: "
        + ", ".join(kills)
    )  # shown by `pytest -rP`
    assert len(kills) >= 20, kills
    assert len(set(kills)) >= 12  # every stage: sourcing, preparing, each model call, writes, checks, export

    # Zero lost or duplicated rows: revisions and outcomes are exactly the uninterrupted run's.
    assert table(db, f"SELECT {REVISION_FIELDS} FROM revisions") == table(
        reference, f"SELECT {REVISION_FIELDS} FROM revisions"
    )
    assert table(db, f"SELECT {OUTCOME_FIELDS} FROM outcomes") == table(
        reference, f"SELECT {OUTCOME_FIELDS} FROM outcomes"
    )
    assert_same_scores(db, reference)
    accepted = query(reference, "SELECT count(*) AS n FROM revisions WHERE accepted")[0]["n"]
    assert query(db, "SELECT count(*) AS n FROM revisions WHERE accepted")[0]["n"] == accepted > 0
    # Every killed run is marked crashed by the run after it; the last one completed.
    statuses = query(db, "SELECT status, count(*) AS n FROM run_overview GROUP BY ALL")
    assert {r["status"]: r["n"] for r in statuses} == {"crashed": len(kills), "completed": 1 + completed_early}

    # The final outputs are the uninterrupted run's: same checks, same training files.
    run, ref_run = final_run(db), final_run(reference)
    checks = "SELECT suite, check_name, trajectory_id, example_id, passed FROM latest_checks WHERE run_id = '{}'"
    assert table(db, checks.format(run)) == table(reference, checks.format(ref_run))
    out, ref_out = db.parent / "out" / run, reference.parent / "out" / ref_run
    assert (out / "train.jsonl").read_bytes() == (ref_out / "train.jsonl").read_bytes()
    ids = ["run_id", "validation_id"]
    table_now, table_then = (pl.read_parquet(o / "trajectories.parquet").drop(ids) for o in (out, ref_out))
    floats = [c for c, t in table_now.schema.items() if t.is_float()]
    assert table_now.drop(floats).equals(table_then.drop(floats))
    for c in floats:
        assert ((table_now[c] - table_then[c]).abs().fill_null(0) <= SCORE_TOLERANCE).all(), c
    exported = "SELECT format, revision_id, row_index FROM exports WHERE run_id = '{}'"
    assert table(db, exported.format(run)) == table(reference, exported.format(ref_run))


def wait_for(condition, what: str, process: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.stderr.read()[-1500:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds} s")
        time.sleep(0.2)


def test_readers_writers_and_ctrl_c_during_a_run(tmp_path, items, reference, prefect_api):
    db = tmp_path / "reer.duckdb"
    snapshot = tmp_path / "reer.snapshot.duckdb"
    hold = tmp_path / "hold"
    hold.touch()
    # The run holds right after its first stored batch, so what follows happens mid-run for sure.
    running = reer(
        "run",
        str(items),
        *SEARCH,
        db=db,
        api=prefect_api,
        wait=False,
        REER_HOLD_AT="stored:1",
        REER_HOLD_FILE=str(hold),
    )
    try:
        # The run published a snapshot when its search started.
        wait_for(lambda: snapshot.exists(), "snapshot", running)
        # A reader gets the snapshot, and one line saying so.
        read = reer("sql", "SELECT count(*) AS n FROM trajectories", "--format", "csv", db=db, api=prefect_api)
        assert read.returncode == 0 and read.stdout.splitlines() == ["n", "2"], read.stderr
        assert "reading its snapshot" in read.stderr and len(read.stderr.strip().splitlines()) == 1
        # A second writer is refused in one line, before it loads a model.
        second = reer("run", str(items), *SEARCH, db=db, api=prefect_api)
        assert second.returncode == 1 and "held by another reer process" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        # Ctrl-C, once the run holds after its first stored batch: it finishes the batch in hand,
        # stops, and says how to go on.
        wait_for(lambda: hold.with_name("hold.held").exists(), "first stored batch", running)
        running.send_signal(signal.SIGINT)
        time.sleep(1)
        hold.unlink()
        _, err = running.communicate(timeout=600)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 130, err[-1500:]
    assert "stopping after the current batch" in err and "Run the same command again to resume" in err
    assert "Traceback" not in err
    (status,) = query(db, "SELECT status FROM run_overview")
    assert status["status"] == "interrupted"
    assert_consistent(db, reference, "Ctrl-C")
    stored = query(db, "SELECT count(*) AS n FROM revisions")[0]["n"]
    assert 0 < stored < len(query(reference, "SELECT * FROM revisions"))  # it stopped mid-search
    assert not snapshot.exists()  # the writer is gone: readers open the database itself
    trajectory = query(db, "SELECT trajectory_id FROM revisions LIMIT 1")[0]["trajectory_id"]
    shown = reer("show", trajectory, db=db, api=prefect_api)
    assert shown.returncode == 0 and f"trajectory {trajectory}" in shown.stdout, shown.stderr
    # The same command resumes and ends as the uninterrupted run.
    again = reer("run", str(items), *SEARCH, db=db, api=prefect_api)
    assert again.returncode == 0, again.stderr[-2000:]
    assert table(db, f"SELECT {REVISION_FIELDS} FROM revisions") == table(
        reference, f"SELECT {REVISION_FIELDS} FROM revisions"
    )
    assert_same_scores(db, reference)


def test_a_changed_configuration_starts_new_trajectories_and_keeps_the_old(tmp_path, items, reference, prefect_api):
    db = tmp_path / "reer.duckdb"
    shutil.copy(reference, db)
    before = table(db, f"SELECT {REVISION_FIELDS} FROM revisions")
    changed = [*SEARCH[:2], "--max-steps", "0", *SEARCH[4:]]  # the same, but no refinement
    result = reer("run", str(items), *changed, db=db, api=prefect_api)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = query(db, "SELECT run_id, config_hash FROM runs ORDER BY started_at")
    assert len(runs) == 2 and runs[0]["config_hash"] != runs[1]["config_hash"]
    old = {
        r["trajectory_id"]
        for r in query(db, f"SELECT trajectory_id FROM trajectories WHERE run_id = '{runs[0]['run_id']}'")
    }
    new = {
        r["trajectory_id"]
        for r in query(db, f"SELECT trajectory_id FROM trajectories WHERE run_id = '{runs[1]['run_id']}'")
    }
    assert len(new) == 2 and not old & new
    assert query(db, "SELECT DISTINCT start FROM trajectories WHERE run_id = '{}'".format(runs[1]["run_id"])) == [
        {"start": "new"}
    ]
    # The old trajectories are untouched: every revision of theirs is still there as it was.
    assert (
        table(
            db,
            f"SELECT {REVISION_FIELDS} FROM revisions WHERE trajectory_id IN (SELECT trajectory_id FROM trajectories WHERE run_id = '{runs[0]['run_id']}')",
        )
        == before
    )
    assert query(db, "SELECT count(*) AS n FROM outcomes")[0]["n"] == 4
