"""The fuzz test of issue 13: thousands of generated malformed records through every reader, each one accounted for.

tests/tasks/malformed.py writes the files and says where each record must land (its docstring holds
the accounting rule). The checks, on the store, with SQL: every record leaves exactly one
source_records row at its own location; the counts per file add up to what was written; each
rejected row has its reject, with a known reason, a one-line detail and its location; each loaded
one has its example; no stored example text holds a control, format (bidi, zero-width) or
surrogate character. The quick variant calls `ingest_files`; the `prefect` one runs the real
`ingest` flow in a child process over a real DuckDB file and holds its peak memory under 1 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from reer.store import Store
from reer.tasks.ingest import ingest_files
from tests.conftest import stored_rows
from tests.tasks.malformed import Written, write_corpus

# Every reason a sourcing reject may give (tasks/readers.py, sources.py, ingest.py); any other
# would be a catch-all hiding a crash.
REASONS = {
    "missing_file", "unknown_format", "empty_file", "unreadable_file", "bad_encoding", "malformed_json",
    "malformed_row", "not_a_collection", "not_an_object", "too_large", "duplicate_key", "missing_query",
    "missing_reference", "empty_query", "empty_reference", "bad_query", "bad_reference", "no_reference",
    "unsupported_language", "too_long", "no_query", "query_synthesis_failed",
}  # fmt: skip
GB = 1 << 30


def unclean(text: str | None) -> list[str]:
    """The control (but newline), format (bidi, zero-width) and surrogate characters in a text."""
    return [f"U+{ord(c):04X}" for c in text or "" if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs")]


def check_store(db: Path, written: list[Written]) -> dict:
    """Every assertion of the accounting rule on one ingested store; returns the figures."""
    sightings = stored_rows(db, "SELECT source, source_record, status, reason, example_id FROM source_records")
    rejects = stored_rows(db, "SELECT source, source_record, reason, detail FROM rejects WHERE stage = 'sourcing'")
    examples = {r["example_id"]: r for r in stored_rows(db, "SELECT * FROM examples")}
    by_file: dict[str, list[dict]] = {}
    for s in sightings:
        by_file.setdefault(s["source"], []).append(s)
    reject_of = {(r["source"], r["source_record"]): r for r in rejects}
    assert len(reject_of) == len(rejects), "two rejects name one record"
    assert set(by_file) == {str(w.path) for w in written}, "a source nobody wrote, or a file with no row"

    for w in written:
        got = {s["source_record"]: s for s in by_file[str(w.path)]}
        # exactly one row per record, at its own location: nothing vanished, nothing counted twice
        assert Counter(s["source_record"] for s in by_file[str(w.path)]) == Counter(r.where for r in w.records), w.path
        for record in w.records:
            row = got[record.where]
            landed = row["reason"] if row["status"] == "rejected" else row["status"]
            assert record.expect in (None, landed), f"{w.path.name} {record.where}: {landed}, not {record.expect}"
            if row["status"] == "rejected":
                reject = reject_of[(str(w.path), record.where)]
                assert reject["reason"] == row["reason"]
                if record.covers != 1:  # a reject standing for swallowed records names their span
                    assert record.detail is None or record.detail in reject["detail"], reject["detail"]
            else:
                assert row["example_id"] in examples, f"{w.path.name} {record.where}: {row['status']} without example"

    rejected = Counter((s["source"], s["source_record"], s["reason"]) for s in sightings if s["status"] == "rejected")
    assert rejected == Counter((r["source"], r["source_record"], r["reason"]) for r in rejects)
    for r in rejects:
        assert r["reason"] in REASONS, r
        assert r["source_record"] and r["detail"] and "\n" not in r["detail"] and "Traceback" not in r["detail"], r
    loaded = {s["example_id"] for s in sightings if s["status"] == "loaded"}
    assert loaded == set(examples)
    for e in examples.values():
        for name in ("query", "reference", "category", "category_given"):
            assert not unclean(e[name]), f"{e['source']} {e['source_record']} {name}: {unclean(e[name])}"
    statuses = Counter(s["status"] for s in sightings)
    return {
        "records": sum(w.count for w in written),
        "rows": len(sightings),
        "files": len(written),
        **statuses,
        "reasons": Counter(r["reason"] for r in rejects),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Written]:
    return write_corpus(tmp_path_factory.mktemp("fuzz") / "in", seed=13)


def test_every_generated_record_lands_in_examples_or_rejects(corpus, tmp_path):
    store = Store(tmp_path / "reer.duckdb")
    ingest_files(store, "run-1", [w.path for w in corpus])
    store.close()
    figures = check_store(tmp_path / "reer.duckdb", corpus)
    assert figures["records"] >= 2000 and figures["loaded"] >= 600 and figures["duplicate"] >= 50
    # every reader, and every way to fail, is exercised
    assert {r for r in REASONS if figures["reasons"][r]} >= REASONS - {
        "missing_file", "unknown_format", "no_reference", "too_long", "query_synthesis_failed",
    }  # fmt: skip


def test_the_generator_is_deterministic(corpus, tmp_path):
    def tree(root: Path) -> dict:
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    again = write_corpus(tmp_path / "in", seed=13)
    assert [(w.path.name, w.records) for w in again] == [(w.path.name, w.records) for w in corpus]
    assert tree(tmp_path / "in") == tree(corpus[0].path.parent)


# The child: the real flow over the files, then its peak memory (VmHWM) beside the summary.
FLOW = """
import json, sys
from reer.flows.ingest import ingest
summary = ingest(inputs=json.loads(sys.argv[1]), options={"db": sys.argv[2]}, use_model=False)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"summary": summary, "peak_kib": peak}, default=str))
"""
# Between the test and the child: its peak, and that of anything it started (Prefect's API), from a clean rusage.
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else "")
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


@pytest.mark.prefect
def test_the_ingest_flow_reads_every_record_under_1_gb(corpus, tmp_path):
    db = tmp_path / "reer.duckdb"
    inputs = json.dumps([str(w.path) for w in corpus])
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-c", FLOW, inputs, str(db)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    result, maxrss = done.stdout.strip().splitlines()[-2:]
    result, peak = json.loads(result), int(maxrss) * 1024  # ru_maxrss is in KiB on Linux
    assert result["peak_kib"] * 1024 < GB and peak < GB, f"peak {peak / (1 << 20):.0f} MiB"
    (run,) = stored_rows(
        db, f"SELECT status, flow_name FROM run_overview WHERE run_id = '{result['summary']['run_id']}'"
    )
    assert run == {"status": "completed", "flow_name": "ingest"}
    figures = check_store(db, corpus)
    assert figures["rows"] == sum(
        n for key, n in result["summary"].items() if key in ("loaded", "duplicate", "rejected")
    )
    print(
        f"fuzz: {figures['records']} records in {seconds:.1f} s; peak RSS {result['peak_kib'] >> 10} MiB in the flow,"
        f" {peak >> 20} MiB in any process it started"
    )
