"""The HTML run report and the run artifacts' builders, on a crafted store (no model, no server)."""

from __future__ import annotations

import re

import pytest

from reer.tasks.artifacts import items_table, summary_markdown
from reer.tasks.report import build_report, latest_run, report_data
from reer.tasks.summary import RunSummary
from reer.tasks.svg import histogram, line_chart, nice_ticks
from tests.tasks.crafted import CLEAN, fill_store

PLOTS = (
    "plot-score-per-step",
    "plot-relative-improvement",
    "plot-acceptance-by-segment",
    "plot-throughput",
    "plot-in-flight",
)


@pytest.fixture
def store(tmp_path):
    store = fill_store(tmp_path / "reer.duckdb", list(CLEAN.values()))
    store.write(
        "rejects",
        [{"run_id": "run-1", "stage": "sourcing", "reason": "malformed_json", "detail": "line 3: malformed JSON"}],
    )
    yield store
    store.close()


def test_the_report_is_one_self_contained_file_with_every_plot(store, tmp_path):
    path = build_report(store.query, "run-1", tmp_path / "out")
    assert path == tmp_path / "out" / "run-1" / "report.html"
    html = path.read_text(encoding="utf-8")
    for ident in PLOTS:
        assert f'id="{ident}"' in html
    assert html.count("<svg") == len(PLOTS)
    # Nothing to fetch: no scripts, no external stylesheets, images or links to the network.
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "reer run run-1" in html and "malformed_json" in html and "traj-a" in html


def test_the_report_rows_come_from_sql(store):
    data = report_data(store.query, "run-1")
    assert data.figures["items"] == 2 and data.header["status"] == "completed"
    assert {r["trajectory_id"] for r in data.items} == {"traj-a", "traj-b"}
    improvement = {r["trajectory_id"]: r["relative_improvement"] for r in data.items}
    assert improvement["traj-a"] == pytest.approx((0.9 - 0.7) / 0.9)
    assert [(r["step"], r["best_score"]) for r in data.steps if r["trajectory_id"] == "traj-b"] == [(0, 0.8), (1, 0.6)]
    assert data.segments == [
        {"segment_index": 0, "steps": 2, "accepted_steps": 2, "candidates": 2, "unparsable": 0, "acceptance_rate": 1.0}
    ]
    assert data.throughput[-1]["finished_total"] == 2
    assert [(r["reason"], r["n"]) for r in data.rejects] == [("malformed_json", 1)]


def test_the_report_shows_how_busy_each_model_was_and_its_sequences_in_flight(store, tmp_path):
    timeline = [{"seconds": 0.0, "generator": 3.5, "scorer": 0.0}, {"seconds": 1.0, "generator": 2.0, "scorer": 4.0}]
    detail = {"busy": {"generator": 0.97, "scorer": 0.42}, "in_flight": timeline}
    store.write("run_events", [{"run_id": "run-1", "status": "completed", "detail": detail}])
    data = report_data(store.query, "run-1")
    assert data.header["busy"] == {"generator": 0.97, "scorer": 0.42} and data.header["in_flight"] == timeline
    html = build_report(store.query, "run-1", tmp_path / "out").read_text(encoding="utf-8")
    assert "generator busy" in html and "97%" in html and "scorer (42% busy)" in html
    plot = html.split('id="plot-in-flight"')[1].split("</figure>")[0]
    assert plot.count("<polyline") == 2  # one line per model


def test_an_unknown_run_is_a_lookup_error_and_latest_finds_the_run(store, tmp_path):
    with pytest.raises(LookupError, match="no run 'nope'"):
        build_report(store.query, "nope", tmp_path)
    assert latest_run(store.query) == "run-1"


def test_the_items_table_and_markdown_summary(store, tmp_path):
    rows = items_table(store.query, "run-1")
    assert {
        r["trajectory_id"]: (r["initial_score"], r["final_score"], r["steps"], r["accepted_edits"], r["status"])
        for r in rows
    } == {"traj-a": (0.9, 0.7, 2, 1, "completed"), "traj-b": (0.8, 0.6, 2, 1, "completed")}
    report = tmp_path / "report.html"
    markdown = summary_markdown(
        RunSummary(
            run_id="run-1",
            db="reer.duckdb",
            items=2,
            completed=2,
            wall_seconds=12.5,
            items_per_hour=576.0,
            passed=1,
            pass_rates={"trajectories.ends_sentence": 0.5},
            rejects_by_reason=[{"stage": "sourcing", "reason": "malformed_json", "n": 1}],
            report=str(report),
            data_docs=None,
            exported={},
        )
    )
    assert "| sourcing | malformed_json | 1 |" in markdown
    assert "| trajectories.ends_sentence | 50.0% |" in markdown
    assert "| items per hour | 576.0000 |" in markdown
    assert f"[report.html]({report.resolve().as_uri()})" in markdown


def test_charts_cope_with_nothing_and_with_one_value():
    assert "nothing to plot yet" in line_chart({}, "x", "y", "empty")
    single = histogram([0.25], "improvement", "one item")
    assert single.startswith("<svg") and "mean 25%" in single
    ticks = nice_ticks(0.0012, 0.0041)
    assert ticks[0] <= 0.0012 and ticks[-1] >= 0.0041 and len(ticks) <= 8


def test_a_report_that_fails_while_being_written_leaves_the_previous_one_whole(store, tmp_path, monkeypatch):
    path = build_report(store.query, "run-1", tmp_path / "out")
    before = path.read_bytes()
    # A page that cannot be encoded fails halfway through the write, as a full disk or a kill would.
    monkeypatch.setattr("reer.tasks.report.render", lambda data: "<html>" + "x" * 100_000 + "\ud800</html>")
    with pytest.raises(UnicodeEncodeError):
        build_report(store.query, "run-1", tmp_path / "out")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary file left


def test_the_report_shows_each_controls_mean_gain_and_the_items_gains(store, tmp_path):
    from reer.settings import SearchConfig
    from reer.tasks.controls import compute
    from tests.tasks.test_controls import ScriptedScorer

    before = build_report(store.query, "run-1", tmp_path / "before").read_text(encoding="utf-8")
    assert 'id="controls"' in before and "thinking gain" in before
    compute(store, "run-1", ScriptedScorer(), SearchConfig(min_segment_chars=20))
    data = report_data(store.query, "run-1")
    assert [(f["control"], f["n"], f["beats"]) for f in data.controls] == [
        ("no_thinking", 2, 2),
        ("other_thinking", 2, 2),
    ]
    assert {r["trajectory_id"]: round(r["thinking_gain"], 6) for r in data.items} == {"traj-a": 0.5, "traj-b": 0.5}
    html = build_report(store.query, "run-1", tmp_path / "after").read_text(encoding="utf-8")
    section = html.split('id="controls"', 1)[1].split("</section>", 1)[0]
    assert "+0.5000" in section and "+0.3000" in section and "2 / 2" in section and "100.0%" in section
    cards = html.split('id="figures"', 1)[1].split("</section>", 1)[0]
    assert "thinking gain" in cards and "specificity" in cards and "z* better in 2/2" in cards
