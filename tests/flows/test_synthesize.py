"""The whole pipeline on real data with the real model, a real DuckDB file and a real Prefect run."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
import torch

from reer.tasks.export import solution_text
from reer.tasks.quality import QualityConfig, check_specs
from reer.tasks.scoring import score_logprobs, scoring_context, split_reference
from tests.conftest import HOME, dict_rows, short_eqbench_items

pytestmark = [pytest.mark.model, pytest.mark.prefect]

SEARCH = dict(max_initial_tokens=200, max_refine_tokens=64, max_steps=2, k=2, seed=1)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fp32_model):
    from reer.flows.synthesize import synthesize

    tmp = tmp_path_factory.mktemp("run")
    good = short_eqbench_items(tmp)
    bad = tmp / "bad.jsonl"
    bad.write_bytes(b'{"query": "oops",\n{"query": "no reference"}\n{"query": "empty", "reference": ""}\n')
    options = {
        "db": str(tmp / "reer.duckdb"),
        "out": str(tmp / "out"),
        "dtype": "float32",
        "home": str(HOME),
        "search": SEARCH,
    }
    summary = synthesize(inputs=[str(good), str(bad)], options=options)
    con = duckdb.connect(options["db"], read_only=True)
    yield summary, con, good
    con.close()


def test_run_completes_and_is_recorded(finished_run):
    summary, con, _ = finished_run
    (run,) = dict_rows(con, "SELECT * FROM run_overview")
    assert run["status"] == "completed" and run["flow_run_id"]
    assert summary.items == 2 and summary.rejected_inputs == 3


def test_bad_records_are_rejected_with_reasons_and_the_rest_runs(finished_run, capfd):
    _, con, _ = finished_run
    reasons = sorted(r["reason"] for r in dict_rows(con, "SELECT reason FROM rejects WHERE stage = 'sourcing'"))
    assert reasons == ["empty_reference", "malformed_json", "missing_reference"]
    details = [r["detail"] for r in dict_rows(con, "SELECT detail FROM rejects WHERE stage = 'sourcing'")]
    assert all(d and "\n" not in d for d in details)


def test_every_revision_is_stored_with_its_score(finished_run):
    _, con, _ = finished_run
    revisions = dict_rows(con, "SELECT * FROM revisions")
    outcomes = dict_rows(con, "SELECT * FROM outcomes")
    assert len(outcomes) == 2
    completed = [o for o in outcomes if o["status"] == "completed"]
    assert completed, "at least one real item must get through the search"
    for o in completed:
        mine = [r for r in revisions if r["trajectory_id"] == o["trajectory_id"]]
        # a rejected z(0) is sampled again (search.initial_retries): one is scored, any before it kept rejected
        initial = [r for r in mine if r["kind"] == "initial" and r["status"] != "rejected"]
        assert len(initial) == 1 and initial[0]["score"] is not None and initial[0]["accepted"]
        candidates = [r for r in mine if r["kind"] == "candidate"]
        # every sampled candidate is a row: k per step, k more where none was usable (search.refine_retries)
        per_step = [sum(1 for c in candidates if c["step"] == s) for s in {c["step"] for c in candidates}]
        assert len(per_step) == o["steps"] and all(n in (SEARCH["k"], 2 * SEARCH["k"]) for n in per_step)
        for c in candidates:
            assert (c["status"] == "scored") == (c["score"] is not None)
            assert c["status"] in {"scored", "unparsable", "unchanged"}
            assert c["parent_id"] is not None
        assert o["final_score"] <= o["initial_score"]
        best = min(r["score"] for r in mine if r["accepted"])
        assert best == pytest.approx(o["final_score"])


def test_stored_scores_equal_a_full_forward_recomputation(finished_run, fp32_model):
    _, con, _ = finished_run
    scored = dict_rows(
        con,
        """
        SELECT v.thinking, v.score, v.nll, v.scored_tokens, x.query, x.reference
        FROM revisions v JOIN trajectories t USING (trajectory_id, run_id) JOIN examples x USING (example_id)
        WHERE v.score IS NOT NULL ORDER BY v.step LIMIT 4""",
    )
    assert scored
    for r in scored:
        split = split_reference(r["reference"])
        context = fp32_model.encode(
            scoring_context(fp32_model.render_chat([("user", r["query"])]), r["thinking"], split)
        )
        target = fp32_model.encode(split.target)
        with torch.inference_mode():
            logits = fp32_model.model(torch.tensor([context + target])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        per_token = [logprobs[len(context) - 1 + j, t].item() for j, t in enumerate(target)]
        # Only the answer after its first segment is scored...
        assert r["scored_tokens"] == len(target) < len(fp32_model.encode(r["reference"]))
        # ...each log-probability clipped at -2, and some of them really are clipped.
        assert r["score"] == pytest.approx(score_logprobs(per_token).score, abs=1e-4)
        assert r["nll"] == pytest.approx(-sum(per_token) / len(per_token), abs=1e-4)
        assert r["nll"] > r["score"]


def test_lineage_returns_the_whole_chain(finished_run):
    _, con, good = finished_run
    for o in dict_rows(con, "SELECT * FROM outcomes WHERE status = 'completed'"):
        chain = dict_rows(
            con, "SELECT * FROM lineage WHERE trajectory_id = ? ORDER BY depth, export_format", o["trajectory_id"]
        )
        revisions = {r["revision_id"] for r in chain}
        assert chain[0]["revision_id"] == o["final_revision_id"]
        assert chain[-1]["kind"] == "initial" and chain[-1]["parent_id"] is None
        assert len(revisions) == o["accepted_edits"] + 1
        assert chain[0]["source"] == str(good) and chain[0]["source_record"].startswith("line ")
        (verdict,) = dict_rows(
            con, "SELECT passed FROM trajectory_verdicts WHERE trajectory_id = ?", o["trajectory_id"]
        )
        formats = {"table", "jsonl", "parquet"} if verdict["passed"] else {"table"}  # training files: passing rows
        assert {c["export_format"] for c in chain if c["depth"] == 0} == formats


def test_exports_hold_the_final_thinking(finished_run):
    summary, con, _ = finished_run
    table = pl.read_parquet(summary.exported["table"]).to_dicts()
    finals = {r["revision_id"]: r["thinking"] for r in dict_rows(con, "SELECT revision_id, thinking FROM revisions")}
    assert table and all(finals[e["revision_id"]] == e["thinking"] for e in table)
    chats = [json.loads(line)["messages"] for line in Path(summary.exported["jsonl"]).read_text().splitlines()]
    passing = [e for e in table if e["passed"]]
    assert [c[1]["content"] for c in chats] == [solution_text(e["thinking"], e["answer"]) for e in passing]


def test_the_run_is_validated_with_data_docs(finished_run):
    summary, con, _ = finished_run
    names = {r["check_name"] for r in dict_rows(con, "SELECT DISTINCT check_name FROM checks")}
    assert names == {s.name for s in check_specs(QualityConfig())}
    assert summary.pass_rates and Path(summary.data_docs).exists()
    assert summary.passed == dict_rows(con, "SELECT count(*) AS n FROM passed_trajectories")[0]["n"]


def test_the_run_writes_its_report_names_its_flow_run_and_leaves_artifacts(finished_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    summary, con, _ = finished_run
    report = Path(summary.report)
    assert report.name == "report.html" and report.parent.name == summary.run_id
    html = report.read_text(encoding="utf-8")
    assert summary.run_id in html and html.count("<svg") == 5 and "malformed_json" in html
    # Each model's busy share, measured by the driver, in the summary and the report.
    assert set(summary.busy) == {"generator", "scorer"} and all(0 < b <= 1 for b in summary.busy.values())
    assert summary.in_flight and "generator busy" in html
    (run,) = dict_rows(con, "SELECT flow_run_id, config_hash FROM runs")
    with get_client(sync_client=True) as client:  # the temporary API keeps its database in PREFECT_HOME
        flow_run = client.read_flow_run(run["flow_run_id"])
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        keys = {a.key for a in artifacts}
    (progress,) = [a for a in artifacts if a.type == "progress"]
    assert progress.data == 100.0 and "generator" in progress.description and "busy" in progress.description
    assert flow_run.name == f"synthesize-eqbench_short.jsonl+1-{run['config_hash'][:8]}"
    assert {"source:eqbench_short.jsonl+1", "model:SmolLM2-135M-Instruct", f"config:{run['config_hash']}"} <= set(
        flow_run.tags
    )
    assert {"reer-run-items", "reer-run-summary", "reer-run-report"} <= keys


def forward_score(model, query: str, reference: str, thinking: str):
    """The answer's Score after `thinking`, by one plain forward of the whole sequence (no batching, no sharing)."""
    split = split_reference(reference)
    context = model.encode(scoring_context(model.render_chat([("user", query)]), thinking, split))
    target = model.encode(split.target)
    with torch.inference_mode():
        logits = model.model(torch.tensor([context + target])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    return score_logprobs([logprobs[len(context) - 1 + j, t].item() for j, t in enumerate(target)])


CONTROL_ROWS = """
    SELECT c.trajectory_id, c.kind, c.donor_trajectory_id, c.score, c.nll, c.scored_tokens, c.dtype, c.note
    FROM controls c ORDER BY c.trajectory_id, c.kind"""


def test_controls_are_stored_for_every_completed_trajectory_and_equal_a_full_recompute(finished_run, fp32_model):
    summary, con, _ = finished_run
    items = {
        r["trajectory_id"]: r
        for r in dict_rows(
            con,
            """SELECT t.trajectory_id, x.query, x.reference, v.thinking, o.final_verified_score
               FROM trajectories t JOIN outcomes o USING (trajectory_id) JOIN examples x USING (example_id)
               JOIN revisions v ON v.revision_id = o.final_revision_id
               WHERE o.status = 'completed'""",
        )
    }
    controls = dict_rows(con, CONTROL_ROWS)
    assert items, "no completed trajectory: nothing to control"
    ordered = sorted(items)
    donors = {t: ordered[(n + 1) % len(ordered)] for n, t in enumerate(ordered)} if len(ordered) > 1 else {}
    # A float32 run stores verified scores with its outcomes: only the two controls, each item once per kind.
    expected = {(t, "no_thinking", None) for t in items} | {(t, "other_thinking", d) for t, d in donors.items()}
    assert {(c["trajectory_id"], c["kind"], c["donor_trajectory_id"]) for c in controls} == expected
    for c in controls:
        item = items[c["trajectory_id"]]
        thinking = "" if c["kind"] == "no_thinking" else items[c["donor_trajectory_id"]]["thinking"]
        recomputed = forward_score(fp32_model, item["query"], item["reference"], thinking)
        assert c["dtype"] == "float32" and c["note"] is None
        assert c["score"] == pytest.approx(recomputed.score, abs=1e-4)
        assert c["nll"] == pytest.approx(recomputed.nll, abs=1e-4)
        assert c["scored_tokens"] == recomputed.tokens
    view = {r["trajectory_id"]: r for r in dict_rows(con, "SELECT * FROM trajectory_controls")}
    for t, item in items.items():
        final = forward_score(fp32_model, item["query"], item["reference"], item["thinking"]).score
        assert view[t]["final_score"] == pytest.approx(final, abs=1e-4)
        no_thinking = forward_score(fp32_model, item["query"], item["reference"], "").score
        assert view[t]["thinking_gain"] == pytest.approx(no_thinking - final, abs=2e-4)
    # Validation read them: both checks hold each completed trajectory, with the gain as observed.
    checks = dict_rows(con, "SELECT * FROM checks WHERE check_name IN ('beats_no_thinking', 'beats_other_thinking')")
    observed = {(r["trajectory_id"], r["check_name"]): r["observed"] for r in checks}
    for t in items:
        assert observed[t, "beats_no_thinking"] == pytest.approx(view[t]["thinking_gain"])
        assert observed[t, "beats_other_thinking"] == (
            None if t not in donors else pytest.approx(view[t]["specificity"])
        )


def test_reer_eval_on_the_stored_run_gives_the_same_rows(finished_run, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    summary, con, _ = finished_run
    stored = dict_rows(con, CONTROL_ROWS)
    copy = tmp_path / "copy.duckdb"
    shutil.copy(summary.db, copy)
    with duckdb.connect(str(copy)) as writer:  # eval must compute them, not find them
        writer.execute("DELETE FROM controls")
    env = {**os.environ, "REER_HOME": str(HOME)}  # the default bf16 setting: eval loads the float32 copy
    done = subprocess.run(
        [sys.executable, "-m", "reer.cli", "eval", "--db", str(copy)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "scoring " in done.stderr and "one batched call" in done.stderr and "Traceback" not in done.stderr
    assert f"controls of run {summary.run_id}" in done.stdout and "thinking gain over no thinking: mean" in done.stdout
    again = dict_rows(duckdb.connect(str(copy), read_only=True), CONTROL_ROWS)
    assert [(r["trajectory_id"], r["kind"], r["donor_trajectory_id"]) for r in again] == [
        (r["trajectory_id"], r["kind"], r["donor_trajectory_id"]) for r in stored
    ]
    for mine, theirs in zip(again, stored):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
        assert mine["scored_tokens"] == theirs["scored_tokens"] and mine["dtype"] == "float32"


def test_a_second_run_skips_finished_trajectories(finished_run, tmp_path):
    from reer.flows.synthesize import synthesize

    summary, con, good = finished_run
    completed = len(dict_rows(con, "SELECT * FROM outcomes"))  # finished either way: completed or rejected
    con.close()  # this process may not hold a read-only and a read-write connection at once
    again = synthesize(
        inputs=[str(good)],
        options={"db": summary.db, "out": str(tmp_path), "dtype": "float32", "home": str(HOME), "search": SEARCH},
    )
    # The rerun covers the same two trajectories and finds them finished: no model work, same figures.
    assert again.skipped_done == completed == 2 and again.items == 2
    assert again.revisions == 0 and again.completed_here == 0
    assert again.completed == summary.completed and again.mean_final_score == summary.mean_final_score


NOTE = {
    "query": "Write a short note about the sea.",
    "reference": "The sea was grey. " * 8 + "\n\n" + "It calmed. " * 12,
}
# One short z(0): too short, and with no redraw rejected at once.
TINY = dict(max_initial_tokens=48, max_steps=1, k=1, seed=1, initial_retries=0)


def linked_copy(folder: Path, into: Path, config: dict | None = None) -> Path:
    """`folder`'s files linked into `into`; config.json a changed copy when `config` is given."""
    into.mkdir(parents=True)
    for f in folder.iterdir():
        if f.name == "config.json" and config:
            (into / f.name).write_text(json.dumps({**json.loads(f.read_text()), **config}))
        else:
            (into / f.name).symlink_to(f)
    return into


def test_a_checkpoint_of_the_same_name_is_searched_again_and_a_copy_of_the_model_is_not(tmp_path, fp32_model):
    from reer.flows.synthesize import synthesize
    from reer.models.shipped import SHIPPED_MODEL_ID, resolve_model

    shipped = resolve_model(SHIPPED_MODEL_ID, HOME)
    copy = linked_copy(shipped, tmp_path / "elsewhere" / SHIPPED_MODEL_ID)
    changed = linked_copy(shipped, tmp_path / "run-b" / SHIPPED_MODEL_ID, {"rms_norm_eps": 1e-6})
    data = tmp_path / "note.jsonl"
    data.write_text(json.dumps(NOTE) + "\n")
    options = {"db": str(tmp_path / "reer.duckdb"), "out": str(tmp_path / "out"), "dtype": "float32"}
    options |= {"home": str(HOME), "search": TINY}
    first = synthesize(inputs=[str(data)], options=options)
    same = synthesize(inputs=[str(data)], options={**options, "generator_model": str(copy), "scorer_model": str(copy)})
    other = synthesize(
        inputs=[str(data)], options={**options, "generator_model": str(changed), "scorer_model": str(changed)}
    )
    assert (first.items, first.skipped_done, first.revisions) == (1, 0, 1)
    assert (same.items, same.skipped_done, same.revisions) == (1, 1, 0)  # the same weights elsewhere: done
    assert (other.items, other.skipped_done, other.revisions) == (1, 0, 1)  # one name, other model: searched
    con = duckdb.connect(options["db"], read_only=True)
    trajectories = dict_rows(con, "SELECT * FROM trajectories ORDER BY created_at")
    runs = {r["run_id"]: r for r in dict_rows(con, "SELECT * FROM run_overview")}
    con.close()
    assert {t["generator_model"] for t in trajectories} == {SHIPPED_MODEL_ID}
    ids = [t["trajectory_id"] for t in trajectories]
    assert ids[0] == ids[1] != ids[2]
    for t in trajectories:
        run = runs[t["run_id"]]
        assert t["generator_fingerprint"] == t["scorer_fingerprint"] == run["generator_fingerprint"]
        assert run["scorer_backend"] == "transformers" and run["generator_dtype"] == run["scorer_dtype"] == "float32"
    shipped_fingerprint, changed_fingerprint = (trajectories[i]["generator_fingerprint"] for i in (0, 2))
    assert shipped_fingerprint == fp32_model.fingerprint != changed_fingerprint


def test_a_reference_that_cannot_be_scored_is_rejected_once_and_not_pending_again(tmp_path, fp32_model):
    from reer.flows.synthesize import synthesize

    data = tmp_path / "short.jsonl"
    data.write_text(json.dumps({"query": "Write one line.", "reference": "One short answer."}) + "\n")
    options = {"db": str(tmp_path / "reer.duckdb"), "out": str(tmp_path / "out"), "dtype": "float32"}
    options |= {"home": str(HOME), "search": TINY}
    first = synthesize(inputs=[str(data)], options=options)
    nightly = synthesize(from_store=True, options=options)
    reseeded = synthesize(from_store=True, options={**options, "search": {**TINY, "seed": 2}})
    assert (first.items, first.rejected_in_search, first.revisions) == (1, 1, 0)
    assert [(r["reason"], r["n"]) for r in first.rejects_by_reason] == [("reference_single_segment", 1)]
    assert nightly.items == 0 and nightly.rejects_by_reason == []  # finished: not pending, no second reject
    assert (reseeded.items, reseeded.rejected_in_search) == (1, 1)  # another seed: another trajectory
    con = duckdb.connect(options["db"], read_only=True)
    fates = dict_rows(
        con, "SELECT t.start, o.status, o.reason FROM trajectories t JOIN outcomes o USING (trajectory_id)"
    )
    assert dict_rows(con, "SELECT count(*) AS n FROM rejects")[0]["n"] == 2
    con.close()
    assert fates == [{"start": "rejected", "status": "rejected", "reason": "reference_single_segment"}] * 2
