"""The dataset card: each table equals SQL written here over a crafted store.

test_export.py checks the card's headline, its per-category and check counts and the passed score means;
here the sources, categories with no category and several sources, the bounds, the provenance, a run
where nothing passes, a revalidated run, and the table writer.
"""

from __future__ import annotations

import pytest

from reer.tasks.card import dataset_card, markdown_table
from reer.tasks.export import write_export
from reer.tasks.quality import QualityConfig, check_specs, validate
from tests.tasks.crafted import CLEAN, THIRD, fill_store

CUT = {"initial_finish_reason": "length"}  # cut by the token limit: fails thinking_closed


def table(card: str, heading: str) -> list[list[str]]:
    """The body rows of the first pipe table under a heading."""
    section = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def texts(rows) -> list[list[str]]:
    """SQL rows as the card prints them (floats to 4 places, NULL as '-')."""
    return [["-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows]


def relabel(store, example_id: str, **values) -> None:
    """Change an example's stored fields (setting up the store, not something reer does)."""
    sets = ", ".join(f"{k} = '{v}'" for k, v in values.items())
    with store.transaction() as con:
        con.exec_driver_sql(f"UPDATE examples SET {sets} WHERE example_id = '{example_id}'")


def three_store(path):
    """Three trajectories: story (passes), no category (fails), poem from another file (passes)."""
    store = fill_store(path, [CLEAN["a"], {**CLEAN["b"], **CUT}, THIRD], categories={"ex-a": "story", "ex-c": "poem"})
    relabel(store, "ex-c", source="other.jsonl")
    return store


def export_card(store, tmp_path, docs=None, cfg=None) -> str:
    """Validate (Data Docs into the export folder, another folder, or none), export, and read the card."""
    out = tmp_path / "out"
    docs_dir = {"in-export": out / "run-1" / "data_docs", "elsewhere": tmp_path / "elsewhere", None: None}[docs]
    validate(store, "run-1", cfg or QualityConfig(), docs_dir)
    written = write_export(store, "run-1", out)
    card = (written.folder / "README.md").read_text(encoding="utf-8")
    assert card == dataset_card(store, "run-1", written)  # the file is the card, nothing added
    return card


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The three trajectories validated with the defaults and exported, once for the tests that only read."""
    tmp_path = tmp_path_factory.mktemp("card")
    store = three_store(tmp_path / "x.duckdb")
    card = export_card(store, tmp_path, docs="in-export")
    yield store, card
    store.close()


@pytest.fixture()
def three(tmp_path):
    store = three_store(tmp_path / "x.duckdb")
    yield store, tmp_path
    store.close()


PASSED = "EXISTS (SELECT 1 FROM passed_trajectories p WHERE p.trajectory_id = t.trajectory_id AND p.run_id = t.run_id)"


def test_the_sources_table_equals_sql(exported):
    store, card = exported
    expected = store.query(
        f"SELECT x.source, count(*) AS examples, count(*) FILTER (WHERE o.status = 'completed') AS completed, "
        f"count(*) FILTER (WHERE {PASSED}) AS passed "
        "FROM trajectories t JOIN examples x USING (example_id) JOIN outcomes o USING (trajectory_id) "
        "WHERE t.run_id = 'run-1' GROUP BY ALL ORDER BY 1"
    ).rows()
    assert table(card, "Provenance")[-len(expected) :] == texts(expected)
    assert texts(expected) == [["crafted.jsonl", "2", "2", "1"], ["other.jsonl", "1", "1", "1"]]
    assert "Sources (the answers keep their sources' licences):" in card


def test_the_categories_table_counts_a_missing_category_as_none_and_orders_by_passed(exported):
    store, card = exported
    expected = store.query(
        f"SELECT coalesce(x.category, '(none)'), count(*) AS completed, count(*) FILTER (WHERE {PASSED}) AS passed "
        "FROM trajectories t JOIN examples x USING (example_id) JOIN outcomes o USING (trajectory_id) "
        "WHERE t.run_id = 'run-1' AND o.status = 'completed' GROUP BY ALL ORDER BY passed DESC, completed DESC, 1"
    ).rows()
    assert table(card, "Trajectories per category") == texts(expected)
    assert texts(expected) == [["poem", "1", "1"], ["story", "1", "1"], ["(none)", "1", "0"]]
    assert card.index("language: [en]") < card.index("# reer trajectories, run `run-1`")


def test_the_provenance_table_is_the_runs_row(exported):
    store, card = exported
    run = store.query("SELECT * FROM runs WHERE run_id = 'run-1'").to_dicts()[0]
    provenance = dict(table(card, "Provenance")[:10])
    assert set(provenance) == {
        "run_id",
        "flow_run_id",
        "started_at",
        "generator_model",
        "scorer_model",
        "backend",
        "dtype",
        "prompt_version",
        "code_version",
        "config_hash",
    }
    for field in ("run_id", "generator_model", "scorer_model", "backend", "dtype", "prompt_version", "config_hash"):
        assert provenance[field] == run[field]
    assert provenance["flow_run_id"] == "-"  # stored as NULL
    assert provenance["started_at"] == str(run["started_at"])


def test_the_checks_table_shows_each_bound_in_check_order_with_the_stored_threshold(three):
    store, tmp_path = three
    card = export_card(store, tmp_path, cfg=QualityConfig(min_thinking_tokens=145))
    rows = table(card, "Checks")
    assert [r[1] for r in rows] == [s.name for s in check_specs(QualityConfig())]
    bounds = {r[1]: r[2] for r in rows}
    assert bounds["min_thinking_tokens"] == ">= 145"  # the threshold the run was held to, not the default
    assert bounds["ngram_repetition"] == "<= 0.2" and bounds["score_not_worse"] == "<= 0"
    counts = {r[1]: (r[3], r[4]) for r in rows}
    assert counts["min_thinking_tokens"] == ("3", "2")  # traj-b has 140 tokens
    assert counts["query_duplicate"] == ("3", "3")


def test_the_card_reads_the_latest_validation(three):
    store, tmp_path = three
    first = export_card(store, tmp_path)
    assert "**2 of 3 completed trajectories passed every quality check**" in first
    card = export_card(store, tmp_path, cfg=QualityConfig(min_thinking_tokens=151))
    latest = store.query("SELECT validation_id FROM latest_validations WHERE run_id = 'run-1'")["validation_id"][0]
    assert store.query("SELECT count(*) AS n FROM validations")["n"][0] == 2
    assert f"Validation `{latest}`" in card
    checked = {r[1]: r[3:5] for r in table(card, "Checks")}
    assert checked["min_thinking_tokens"] == ["3", "0"]  # not 6 checked: only the latest validation counts
    assert "**0 of 3 completed trajectories passed every quality check**" in card


def test_data_docs_are_listed_only_when_they_sit_in_the_export(exported, three):
    inside = {r[0]: r for r in table(exported[1], "Files")}
    assert inside["data_docs/index.html"][1] == "-"
    store, tmp_path = three
    elsewhere = {r[0] for r in table(export_card(store, tmp_path, docs="elsewhere"), "Files")}
    assert "data_docs/index.html" not in elsewhere and "train.parquet" in elsewhere
    assert (tmp_path / "elsewhere" / "index.html").is_file()


def test_a_run_where_nothing_passes_says_so_and_its_tables_still_add_up(tmp_path):
    store = fill_store(
        tmp_path / "x.duckdb", [{**CLEAN["a"], **CUT}, {**CLEAN["b"], **CUT}], categories={"ex-a": "story"}
    )
    try:
        card = export_card(store, tmp_path)
        assert "**0 of 2 completed trajectories passed every quality check**" in card
        assert "> No trajectory passed every check" in card
        files = {r[0]: r[1] for r in table(card, "Files")}
        assert (files["train.parquet"], files["train.jsonl"], files["trajectories.parquet"]) == ("0", "0", "2")
        assert table(card, "Trajectories per category") == [["(none)", "1", "0"], ["story", "1", "0"]]
        scores = table(card, "Scores")
        assert {r[0] for r in scores} == {"completed"}  # no 'passed' rows at all
        drop = {r[1]: r for r in scores}["score_drop"]
        expected = store.query("SELECT count(*), avg(initial_score - final_score) FROM outcomes").rows()[0]
        assert drop[2:4] == [str(expected[0]), f"{expected[1]:.4f}"]
        closed = {r[1]: r for r in table(card, "Checks")}["thinking_closed"]
        assert closed[3:] == ["2", "0", "0.0000"]
        assert table(card, "Provenance")[-1] == ["crafted.jsonl", "2", "2", "0"]
        assert "language: [en]" in card  # no passing language: the front matter falls back to en
    finally:
        store.close()


def test_markdown_table_formats_and_escapes_cells():
    lines = markdown_table(["a", "b", "c", "d"], [[1, 0.123456, None, "x|y\nz"], ["", 2.0, True, "plain"]])
    assert lines == [
        "| a | b | c | d |",
        "|---|---|---|---|",
        "| 1 | 0.1235 | - | x\\|y z |",
        "|  | 2.0000 | True | plain |",
    ]
    assert markdown_table(["only"], []) == ["| only |", "|---|"]


def test_the_controls_section_gives_each_controls_mean_gain_and_share(tmp_path):
    from reer.settings import SearchConfig
    from reer.tasks.controls import compute
    from tests.tasks.test_controls import ScriptedScorer

    store = three_store(tmp_path / "reer.duckdb")
    try:
        without = export_card(store, tmp_path / "before")
        assert table(without, "Controls") == [
            ["thinking gain", "no thinking (an empty think block)", "0", "-", "0 / 0", "-"],
            ["specificity", "another item's final thinking (each item reads the next one's)", "0", "-", "0 / 0", "-"],
        ]
        compute(store, "run-1", ScriptedScorer(), SearchConfig(min_segment_chars=20))
        # One item's no-thinking control scores better than its z*: it is not beaten.
        with store.transaction() as con:
            con.exec_driver_sql(
                "UPDATE controls SET score = 0.4 WHERE trajectory_id = 'traj-c' AND kind = 'no_thinking'"
            )
        card = export_card(store, tmp_path / "after")
        expected = store.query(
            "SELECT avg(thinking_gain) AS gain, avg(specificity) AS spec FROM trajectory_controls WHERE run_id = 'run-1'"
        ).to_dicts()[0]
        assert table(card, "Controls") == [
            ["thinking gain", "no thinking (an empty think block)", "3", f"{expected['gain']:.4f}", "2 / 3", "0.6667"],
            [
                "specificity",
                "another item's final thinking (each item reads the next one's)",
                "3",
                f"{expected['spec']:.4f}",
                "3 / 3",
                "1.0000",
            ],
        ]
        assert "at least 1e-05" in card
    finally:
        store.close()
