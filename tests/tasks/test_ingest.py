import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reer.store import Store
from reer.tasks.hygiene import normalize_text
from reer.tasks.ingest import check_lengths, ingest_files
from reer.tasks.mappings import describe, field_pairs, parse_overrides
from reer.tasks.records import Example, Rejected
from reer.tasks.sources import example_id, read_source
from tests.conftest import shared_file

GOOD = {"query": "Write a note.", "reference": "A" * 120 + "\n\n" + "B" * 120}


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_every_bad_record_is_rejected_with_its_reason_and_good_ones_load(tmp_path):
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            json.dumps(GOOD).encode(),
            b'{"query": "broken", ',
            json.dumps({"query": "no answer here"}).encode(),
            json.dumps({"query": "empty", "reference": "   "}).encode(),
            b'{"query": "latin-1 \xe9", "reference": "x"}',
            json.dumps(["not", "an", "object"]).encode(),
            json.dumps({"prompt": "alias fields", "response": "C" * 130 + "\n\n" + "D" * 120}).encode(),
        ],
    )
    records = list(read_source(path))
    reasons = [(r.source_record, r.reason) for r in records if isinstance(r, Rejected)]
    assert reasons == [
        ("line 2", "malformed_json"),
        ("line 3", "missing_reference"),
        ("line 4", "empty_reference"),
        ("line 5", "bad_encoding"),
        ("line 6", "not_an_object"),
    ]
    good = [r for r in records if isinstance(r, Example)]
    assert [g.source_record for g in good] == ["line 1", "line 7"]
    line = records[1].line()
    assert "mixed.jsonl" in line and "line 2" in line and "malformed JSON" in line and "\n" not in line


def test_missing_file_and_unknown_format_are_rejects_not_crashes(tmp_path):
    (missing,) = read_source(tmp_path / "nope.jsonl")
    assert missing.reason == "missing_file"
    (tmp_path / "data.xml").write_text("<x/>")
    (unknown,) = read_source(tmp_path / "data.xml")
    assert unknown.reason == "unknown_format"


def test_json_list_and_keyed_object(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([GOOD, {"query": "q"}]))
    (tmp_path / "keyed.json").write_text(json.dumps({"7": GOOD}))
    listed = list(read_source(tmp_path / "list.json"))
    assert isinstance(listed[0], Example) and listed[1].reason == "missing_reference"
    (keyed,) = read_source(tmp_path / "keyed.json")
    assert keyed.source_record == "record 7"


def test_same_pair_gets_the_same_id_after_normalization(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [json.dumps(GOOD).encode()])
    b = write_lines(tmp_path / "b.jsonl", [json.dumps({**GOOD, "query": "Write a note.  \r\n"}).encode()])
    (ea,), (eb,) = read_source(a), read_source(b)
    assert ea.example_id == eb.example_id


def test_normalize_text():
    assert normalize_text("  e\u0301\r\nline  \n") == "\u00e9\nline"


# -- declared sources, the real data, every kind of bad record, idempotent ingest ---------------

SHARED = [
    "eqbench_creative_writing_prompts.json",
    "hellobench_heuristic_text_generation.jsonl",
    "hellobench_heuristic_text_generation_claude35_responses.jsonl",
    "longbench_write.jsonl",
]


def by_file(store, run_id):
    """{file name: {status or 'rejected:reason': count}} from source_records."""
    rows = store.query(
        "SELECT source, status, reason, count(*) AS n FROM source_records WHERE run_id = $r GROUP BY ALL", r=run_id
    )
    counts: dict = {}
    for r in rows.to_dicts():
        key = f"rejected:{r['reason']}" if r["status"] == "rejected" else r["status"]
        counts.setdefault(Path(r["source"]).name, {})[key] = r["n"]
    return counts


def test_every_shared_file_maps_with_the_expected_counts(tmp_path):
    paths = [shared_file(name) for name in SHARED]
    store = Store(tmp_path / "reer.duckdb")
    loaded = ingest_files(store, "run-1", paths)
    assert by_file(store, "run-1") == {
        "eqbench_creative_writing_prompts.json": {"loaded": 19},
        "hellobench_heuristic_text_generation.jsonl": {"loaded": 123},
        # the answers join the queries by id: the same 123 pairs, merged as duplicates
        "hellobench_heuristic_text_generation_claude35_responses.jsonl": {"duplicate": 123},
        "longbench_write.jsonl": {"rejected:no_reference": 120},
    }
    assert len(loaded.examples) == 142 and loaded.rejected == 120 and loaded.duplicates == 123
    rejects = store.query("SELECT reason, detail FROM rejects WHERE run_id = 'run-1'")
    assert set(rejects["reason"]) == {"no_reference"} and "target length only" in rejects["detail"][0]
    store.close()


def test_eqbench_drops_the_seed_placeholder_and_keeps_its_key():
    examples = [e for e in read_source(shared_file(SHARED[0])) if isinstance(e, Example)]
    assert len(examples) == 19 and not any("<SEED>" in e.query or " ." in e.query for e in examples)
    first = examples[0]
    assert first.source_id == "1" and first.query.endswith("happily ever after. 600-800 words.")
    assert first.category is None and first.category_source is None  # left to the model


def test_hellobench_join_brings_reference_and_category_by_id(tmp_path):
    queries, answers = (shared_file(name) for name in SHARED[1:3])
    from_queries = {e.source_id: e for e in read_source(queries)}
    from_answers = {e.source_id: e for e in read_source(answers)}
    assert len(from_queries) == len(from_answers) == 123
    for key, e in from_queries.items():
        assert e.example_id == from_answers[key].example_id  # one pair, whichever file it is read from
    e = from_queries["heuristic_text_generation_000"]
    assert e.reference.startswith("Title: The Case for Allowing Dogs") and e.query.startswith("You should write")
    assert (e.category, e.category_given, e.category_source) == (
        "argumentative_essay",
        "argumentative_writing",
        "mapped",
    )
    kept = Counter((x.category, x.category_source) for x in from_queries.values())
    assert kept == {
        ("argumentative_essay", "mapped"): 23,
        ("story", "mapped"): 25,
        ("screenplay", "mapped"): 25,
        ("roleplay", "mapped"): 25,
        ("keyword_writing", "given"): 25,
    }


def test_hellobench_files_alone(tmp_path):
    alone_queries = Path(shutil.copy(shared_file(SHARED[1]), tmp_path / SHARED[1]))
    reasons = Counter(r.reason for r in read_source(alone_queries))
    assert reasons == {"no_reference": 123}
    (tmp_path / "answers").mkdir()
    alone_answers = Path(shutil.copy(shared_file(SHARED[2]), tmp_path / "answers" / SHARED[2]))
    examples = list(read_source(alone_answers))
    assert len(examples) == 123 and all(isinstance(e, Example) and e.category is None for e in examples)


def test_longbench_is_rejected_with_a_clear_reason_not_a_crash():
    records = list(read_source(shared_file(SHARED[3])))
    assert len(records) == 120 and {r.reason for r in records} == {"no_reference"}
    line = records[0].line()
    assert "longbench_write.jsonl line 1" in line and "no reference answer" in line and "\n" not in line


def test_hand_made_files_with_every_kind_of_bad_record(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        b"\n".join(
            [
                json.dumps(GOOD).encode(),  # 1 good
                b'{"query": "broken", ',  # 2 malformed JSON
                json.dumps({"reference": GOOD["reference"]}).encode(),  # 3 no query
                json.dumps({"query": "no answer"}).encode(),  # 4 no reference
                json.dumps({"query": "  ", "reference": GOOD["reference"]}).encode(),  # 5 empty query
                json.dumps({"query": "q", "reference": "\u200b \n "}).encode(),  # 6 reference of invisible characters
                json.dumps({"query": "q", "reference": 42}).encode(),  # 7 not text
                b'{"query": "latin-1 \xe9", "reference": "x"}',  # 8 bad encoding
                json.dumps("just a string").encode(),  # 9 not an object
                json.dumps(
                    {"query": "Напишите рассказ о маяке и его смотрителе.", "reference": "Маяк стоял на скале."}
                ).encode(),  # 10
                json.dumps(
                    {"query": "Write a long one.", "reference": "word " * 500 + "\n\n" + "end " * 200}
                ).encode(),  # 11 too long
            ]
        )
        + b"\n"
    )
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('query,reference\n"Write a note.","fine"\nonly-one-field\n', encoding="utf-8")
    table = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"query": ["Write a note."], "reference": [None]}), table)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "notes.xml").write_text("<x/>")
    paths = [bad, ragged, table, tmp_path / "empty.jsonl", tmp_path / "notes.xml", tmp_path / "missing.jsonl"]
    store = Store(tmp_path / "reer.duckdb")
    scorer = SimpleNamespace(count_tokens=lambda text: len(text.split()), context_window=1024)  # a tokenizer stand-in
    ingest_files(store, "run-1", paths, scorer=scorer, reserve=448, categorize=False)
    rows = store.query("SELECT source, source_record, reason, detail FROM rejects ORDER BY reject_id").to_dicts()
    got = [(Path(r["source"]).name, r["source_record"], r["reason"]) for r in rows]
    assert got == [
        ("bad.jsonl", "line 2", "malformed_json"),
        ("bad.jsonl", "line 3", "missing_query"),
        ("bad.jsonl", "line 4", "missing_reference"),
        ("bad.jsonl", "line 5", "empty_query"),
        ("bad.jsonl", "line 6", "empty_reference"),
        ("bad.jsonl", "line 7", "bad_reference"),
        ("bad.jsonl", "line 8", "bad_encoding"),
        ("bad.jsonl", "line 9", "not_an_object"),
        ("bad.jsonl", "line 10", "unsupported_language"),
        ("ragged.csv", "line 3", "malformed_row"),
        ("numbers.parquet", "row 0", "missing_reference"),
        ("empty.jsonl", "(file)", "empty_file"),
        ("notes.xml", "(file)", "unknown_format"),
        ("missing.jsonl", "(file)", "missing_file"),
        ("bad.jsonl", "line 11", "too_long"),  # measured after reading, with the scorer's tokenizer
    ]
    assert all(r["detail"] and "\n" not in r["detail"] for r in rows)
    statuses = store.query("SELECT status, count(*) AS n FROM source_records GROUP BY ALL").to_dicts()
    assert {r["status"]: r["n"] for r in statuses} == {"loaded": 2, "rejected": 15}
    store.close()


def test_each_reject_prints_one_line_naming_file_record_and_reason(tmp_path, capsys):
    path = write_lines(tmp_path / "bad.jsonl", [b'{"query": "broken", ', json.dumps(GOOD).encode()])
    store = Store(tmp_path / "reer.duckdb")
    ingest_files(store, "run-1", [path, tmp_path / "nope.csv"])
    store.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"skipped {path} line 1: malformed JSON (Expecting property name enclosed in double quotes at column 21)",
        f"skipped {tmp_path / 'nope.csv'} (file): the file does not exist",
    ]


def test_ingesting_the_same_input_twice_adds_nothing(tmp_path):
    paths = [shared_file(SHARED[0]), write_lines(tmp_path / "mine.jsonl", [json.dumps(GOOD).encode()])]
    again = write_lines(tmp_path / "copy.jsonl", [json.dumps({**GOOD, "query": "Write a note.\r\n"}).encode()])
    store = Store(tmp_path / "reer.duckdb")
    first = ingest_files(store, "run-1", paths)
    ids = store.query("SELECT example_id FROM examples ORDER BY 1")["example_id"].to_list()
    second = ingest_files(store, "run-2", [*paths, again])
    assert store.query("SELECT example_id FROM examples ORDER BY 1")["example_id"].to_list() == ids
    assert len(ids) == 20 and [e.example_id for e in first.examples] == [e.example_id for e in second.examples]
    assert second.counts == {"known": 20, "duplicate": 1}
    store.close()


def test_limit_leaves_the_rest_counted_for_later(tmp_path):
    store = Store(tmp_path / "reer.duckdb")
    loaded = ingest_files(store, "run-1", [shared_file(SHARED[0])], limit=5)
    assert len(loaded.examples) == 5 and loaded.counts == {"loaded": 5, "over_limit": 14}
    assert store.query("SELECT count(*) AS n FROM examples")["n"][0] == 5
    store.close()


def test_user_mapping_overrides_the_aliases(tmp_path):
    path = write_lines(
        tmp_path / "odd.jsonl",
        [json.dumps({"ask": "Write a note.", "text": GOOD["reference"], "kind": "Poetry", "uid": 7}).encode()],
    )
    (rejected,) = read_source(path)
    assert rejected.reason == "missing_query"
    mapping = parse_overrides(field_pairs(["query=ask", "reference=text", "category=kind"]))
    (example,) = read_source(path, mapping)
    assert (example.query, example.category, example.category_source, example.source_id) == (
        "Write a note.",
        "poem",
        "mapped",
        "7",
    )
    assert "query=ask" in describe(mapping)
    texts_only = parse_overrides({"query": "", "reference": "text"})
    (text,) = read_source(path, texts_only)
    assert text.needs_query and text.example_id == example_id("", text.reference)


def test_unknown_role_in_a_mapping_is_one_clear_error():
    from reer.tasks.mappings import MappingError

    with pytest.raises(MappingError, match="unknown role 'answer'"):
        parse_overrides(field_pairs(["answer=text"]))
    with pytest.raises(MappingError, match="not role=field"):
        field_pairs(["query"])


def test_a_text_file_needs_a_generator_to_get_its_query(tmp_path):
    (tmp_path / "excerpt.txt").write_text("The tide came in.\n\nShe waited.", encoding="utf-8")
    store = Store(tmp_path / "reer.duckdb")
    loaded = ingest_files(store, "run-1", [tmp_path / "excerpt.txt"])
    assert loaded.examples == [] and loaded.counts == {"rejected": 1}
    (reason,) = store.query("SELECT reason FROM rejects")["reason"]
    assert reason == "no_query"
    store.close()


def test_length_is_measured_in_scorer_tokens_with_room_for_a_query():
    scorer = SimpleNamespace(count_tokens=lambda text: len(text.split()), context_window=100)
    fits = Example("a", "q q", "r " * 60, "s", "line 1", None, "en")
    needs_query = Example("b", "", "r " * 60, "s", "line 2", None, "en")
    kept, rejected = check_lengths([fits, needs_query], scorer, budget=100)
    assert [e.example_id for e in kept] == ["a"] and kept[0].tokens == 62
    assert rejected[0].reason == "too_long" and "36 fit" in rejected[0].detail


def test_pending_examples_are_those_without_a_completed_trajectory_under_this_configuration(tmp_path):
    from reer.settings import SearchConfig
    from reer.tasks.ingest import select_pending

    store = Store(tmp_path / "reer.duckdb")
    ingest_files(store, "run-1", [shared_file(SHARED[0])])
    ids = store.query("SELECT example_id FROM examples ORDER BY example_id")["example_id"].to_list()
    config = SearchConfig()
    store.write(
        "trajectories",
        [
            {
                "trajectory_id": f"t{i}",
                "run_id": "run-2",
                "example_id": ids[i],
                "config_hash": config.fingerprint(),
                "prompt_version": "p1",
                "generator_model": "g",
                "scorer_model": "s",
                "generator_fingerprint": "g",
                "scorer_fingerprint": "s",
            }
            for i in range(3)
        ],
    )
    store.write(
        "outcomes",
        [
            {
                "trajectory_id": "t0",
                "run_id": "run-2",
                "status": "completed",
                "reason": "below_tau",
                "steps": 0,
                "accepted_edits": 0,
                "segments": 2,
            },
            {
                "trajectory_id": "t1",
                "run_id": "run-2",
                "status": "rejected",
                "reason": "too_short",
                "steps": 0,
                "accepted_edits": 0,
                "segments": 1,
            },
        ],
    )
    pending = select_pending.fn(store, config, "p1", "g", "s")
    # t0 completed and t1 rejected are both finished; t2 has no outcome yet and stays pending.
    assert len(pending.examples) == 17 and not {ids[0], ids[1]} & {e.example_id for e in pending.examples}
    assert len(select_pending.fn(store, config, "p2", "g", "s").examples) == 19  # another prompt version: all pending
    assert len(select_pending.fn(store, SearchConfig(tau=0.1), "p1", "g", "s", limit=4).examples) == 4
    # Another seed is another configuration (the seed is part of the config hash): all pending.
    assert len(select_pending.fn(store, SearchConfig(seed=7), "p1", "g", "s").examples) == 19
    store.close()


@pytest.mark.model
def test_a_reference_too_long_for_the_scorer_is_rejected_in_its_tokens(tmp_path, fp32_model):
    long_reference = "\n\n".join(["The sea was grey and the wind was cold. " * 40] * 40)  # about 16,000 tokens
    path = write_lines(
        tmp_path / "long.jsonl",
        [
            json.dumps({"query": "Write about the sea.", "reference": long_reference}).encode(),
            json.dumps(GOOD).encode(),
        ],
    )
    store = Store(tmp_path / "reer.duckdb")
    loaded = ingest_files(store, "run-1", [path], scorer=fp32_model, reserve=448, categorize=False)
    (reject,) = store.query("SELECT source_record, reason, detail FROM rejects").to_dicts()
    store.close()
    assert (reject["source_record"], reject["reason"]) == ("line 1", "too_long")
    assert "8192-token context" in reject["detail"]
    assert [e.source_record for e in loaded.examples] == ["line 2"] and loaded.examples[0].tokens < 300


def test_an_example_whose_trajectory_was_rejected_is_not_pending_again(tmp_path):
    """A rejected trajectory is finished: the nightly queue must not pick its example again."""
    from reer.settings import SearchConfig
    from reer.tasks.ingest import select_pending

    store = Store(tmp_path / "reer.duckdb")
    ingest_files(store, "run-1", [shared_file(SHARED[0])])
    first = select_pending.fn(store, SearchConfig(), "p1", "g", "s", limit=2).examples
    rejected, unfinished = first[0].example_id, first[1].example_id
    config = SearchConfig()
    common = {"run_id": "run-2", "config_hash": config.fingerprint(), "prompt_version": "p1"}
    common |= {"generator_model": "g", "scorer_model": "s", "generator_fingerprint": "g", "scorer_fingerprint": "s"}
    store.write(
        "trajectories",
        [
            {**common, "trajectory_id": "t-rej", "example_id": rejected},
            {**common, "trajectory_id": "t-open", "example_id": unfinished},  # started, no outcome yet
        ],
    )
    store.write(
        "outcomes",
        [
            {
                "trajectory_id": "t-rej",
                "run_id": "run-2",
                "status": "rejected",
                "reason": "single_segment",
                "steps": 0,
                "accepted_edits": 0,
                "segments": 1,
            }
        ],
    )
    pending = [e.example_id for e in select_pending.fn(store, config, "p1", "g", "s").examples]
    assert rejected not in pending and len(pending) == 18
    assert pending[0] == unfinished  # no outcome yet: resumed, and first in line as before
    assert select_pending.fn(store, config, "p1", "g", "s", limit=1).examples[0].example_id == unfinished
    # Other settings or models have not searched it: pending there.
    assert rejected in [e.example_id for e in select_pending.fn(store, config, "p1", "g", "other").examples]
    store.close()
