"""The ingest flow on the real data with the real model, then a search that starts from the store."""

from __future__ import annotations

import pytest

from tests.conftest import HOME, shared_file, stored_rows

pytestmark = [pytest.mark.model, pytest.mark.prefect]

EXCERPT = (
    "The lighthouse keeper climbed the hundred steps every evening, counting them aloud as his father had.\n\n"
    "On the night of the storm he lost count at sixty and sat down on the cold iron, listening to the sea."
)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, fp32_model):
    from reer.flows.ingest import ingest

    tmp = tmp_path_factory.mktemp("ingest")
    (tmp / "excerpt.txt").write_text(EXCERPT, encoding="utf-8")
    inputs = [
        str(shared_file("eqbench_creative_writing_prompts.json")),
        str(shared_file("longbench_write.jsonl")),
        str(tmp / "excerpt.txt"),
        str(tmp / "missing.jsonl"),
    ]
    options = {"db": str(tmp / "reer.duckdb"), "dtype": "float32", "home": str(HOME)}
    first = ingest(inputs=inputs, options=options)
    second = ingest(inputs=inputs, options=options)
    return first, second, options, tmp


def test_every_record_lands_in_examples_or_rejects(ingested):
    first, _, options, _ = ingested
    assert first["examples"] == 20 and first["loaded"] == 20 and first["rejected"] == 121
    per_file = {(r["source"].rsplit("/", 1)[-1], r["status"], r["reason"]): r["n"] for r in first["sources"]}
    assert per_file == {
        ("eqbench_creative_writing_prompts.json", "loaded", ""): 19,
        ("excerpt.txt", "loaded", ""): 1,
        ("longbench_write.jsonl", "rejected", "no_reference"): 120,
        ("missing.jsonl", "rejected", "missing_file"): 1,
    }
    (run,) = stored_rows(options["db"], f"SELECT * FROM run_overview WHERE run_id = '{first['run_id']}'")
    assert run["flow_name"] == "ingest" and run["status"] == "completed"


def test_categories_come_from_the_model_with_confidence(ingested):
    _, _, options, _ = ingested
    examples = stored_rows(options["db"], "SELECT * FROM examples")
    assert all(e["category_source"] == "model" and 0 < e["category_confidence"] <= 1 for e in examples)
    known = {r["category"] for r in stored_rows(options["db"], "SELECT category FROM categories")}
    assert {e["category"] for e in examples} <= known
    assert all(e["tokens"] and e["tokens"] < 8192 for e in examples)


def test_the_excerpt_gets_a_synthesized_query(ingested):
    _, _, options, _ = ingested
    (excerpt,) = stored_rows(options["db"], "SELECT * FROM examples WHERE source LIKE '%excerpt.txt'")
    assert excerpt["query_synthesized"] and excerpt["query_prompt_version"].startswith("q1-")
    assert excerpt["query"].startswith("Write ") and " about " in excerpt["query"]
    assert sum(e["query_synthesized"] for e in stored_rows(options["db"], "SELECT * FROM examples")) == 1


def test_ingesting_again_adds_no_example(ingested):
    first, second, options, _ = ingested
    assert second["examples"] == 20 and second["known"] == 20 and "loaded" not in second
    assert stored_rows(options["db"], "SELECT count(*) AS n FROM examples")[0]["n"] == 20


def test_a_search_can_start_from_the_store(ingested):
    from reer.flows.synthesize import synthesize

    _, _, options, tmp = ingested
    search = dict(max_initial_tokens=120, max_refine_tokens=48, max_steps=1, k=1, seed=3)
    summary = synthesize(limit=1, from_store=True, options={**options, "out": str(tmp / "out"), "search": search})
    assert summary.items == 1 and summary.rejected_inputs == 0
    (trajectory,) = stored_rows(options["db"], f"SELECT * FROM trajectories WHERE run_id = '{summary.run_id}'")
    assert trajectory["example_id"] in {
        e["example_id"] for e in stored_rows(options["db"], "SELECT example_id FROM examples")
    }
