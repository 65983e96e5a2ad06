"""Declared mappings: which mapping a file gets by its name, `--map role=field` overrides, and their one-line description.

Reading files through these mappings is tested in test_ingest.py; here only the choice and the parsing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reer.tasks.mappings import (
    CATEGORY_FIELDS,
    DEFAULT,
    ID_FIELDS,
    PLAIN_TEXT,
    QUERY_FIELDS,
    REFERENCE_FIELDS,
    REGISTRY,
    MappingError,
    describe,
    field_pairs,
    mapping_for,
    parse_overrides,
)
from tests.conftest import SHARED_DATA

REGISTERED = {m.name: m for m in REGISTRY}


# -- which mapping a file gets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("eqbench_creative_writing_prompts.json", "eqbench-creative-writing"),
        ("eqbench_creative_writing_prompts_v3.json", "eqbench-creative-writing"),
        ("hellobench_heuristic_text_generation.jsonl", "hellobench-queries"),
        ("hellobench_heuristic_text_generation_claude35_responses.jsonl", "hellobench-answers"),
        # every HelloBench subset, not only the one in shared/data
        ("hellobench_open_ended_qa.jsonl", "hellobench-queries"),
        ("hellobench_open_ended_qa_claude35_responses.jsonl", "hellobench-answers"),
        ("longbench_write.jsonl", "longbench-write"),
        ("longbench_write_en.jsonl", "longbench-write"),
        ("my_pairs.jsonl", "default"),
        ("pairs.csv", "default"),
        ("eqbench_creative_writing_prompts.jsonl", "default"),  # the EQ-Bench file is one JSON object
    ],
)
def test_a_file_gets_the_declared_source_its_name_matches(name, expected):
    assert mapping_for(Path("/data/some/folder") / name).name == expected


def test_only_the_file_name_counts_not_its_folder():
    assert mapping_for(Path("/data/longbench_write.jsonl/mine.jsonl")) is DEFAULT
    assert mapping_for(Path("/data/hellobench_x/longbench_write.jsonl")) is REGISTERED["longbench-write"]


def test_every_shared_data_file_has_a_declared_mapping():
    files = sorted(p for p in SHARED_DATA.glob("*.json*"))
    if not files:
        pytest.skip(f"needs the real data in {SHARED_DATA}")
    assert {p.name: mapping_for(p).name for p in files} == {
        "eqbench_creative_writing_prompts.json": "eqbench-creative-writing",
        "hellobench_heuristic_text_generation.jsonl": "hellobench-queries",
        "hellobench_heuristic_text_generation_claude35_responses.jsonl": "hellobench-answers",
        "longbench_write.jsonl": "longbench-write",
    }


def test_the_hellobench_files_join_each_other():
    queries = Path("/data/hellobench_heuristic_text_generation.jsonl")
    answers = Path("/data/hellobench_heuristic_text_generation_claude35_responses.jsonl")
    assert mapping_for(queries).join.sibling(queries) == answers
    assert mapping_for(answers).join.sibling(answers) == queries
    assert mapping_for(queries).join.fields == {"reference": "response"}
    assert mapping_for(answers).join.fields == {"query": "instruction", "category": "category"}


def test_requests_only_sources_have_no_reference_and_say_why():
    for name in ("hellobench-queries", "longbench-write"):
        mapping = REGISTERED[name]
        assert mapping.reference is None and mapping.note
    assert "no reference answer" in REGISTERED["longbench-write"].note
    assert REGISTERED["eqbench-creative-writing"].drop_placeholders == ("<SEED>",)


def test_an_override_wins_even_over_a_declared_source():
    override = parse_overrides({"query": "ask"})
    for name in ("longbench_write.jsonl", "eqbench_creative_writing_prompts.json", "mine.jsonl"):
        assert mapping_for(Path(name), override) is override


def test_plain_text_gets_the_plain_text_mapping_whatever_else_is_given():
    override = parse_overrides({"query": "ask"})
    assert mapping_for(Path("story.txt"), text=True) is PLAIN_TEXT
    assert mapping_for(Path("notes.md"), override, text=True) is PLAIN_TEXT
    assert mapping_for(Path("longbench_write.jsonl"), text=True) is PLAIN_TEXT
    assert PLAIN_TEXT.query is None and PLAIN_TEXT.reference == ("text",)


def test_without_an_override_or_a_match_the_aliases_apply():
    mapping = mapping_for(Path("anything.parquet"), None)
    assert mapping is DEFAULT
    assert (mapping.query, mapping.reference, mapping.category, mapping.id) == (
        QUERY_FIELDS,
        REFERENCE_FIELDS,
        CATEGORY_FIELDS,
        ID_FIELDS,
    )
    assert mapping.join is None and mapping.drop_placeholders == ()


# -- --map role=field ----------------------------------------------------------------------------


def test_field_pairs_split_on_the_first_equals_sign_and_strip_spaces():
    assert field_pairs(["query=prompt", " reference = answer ", "id=a=b"]) == {
        "query": "prompt",
        "reference": "answer",
        "id": "a=b",
    }
    assert field_pairs(None) == {} and field_pairs([]) == {}
    assert field_pairs(["query=a", "query=b"]) == {"query": "b"}  # the last one given wins


def test_field_pairs_name_the_first_malformed_pair():
    with pytest.raises(MappingError, match=r"field mapping 'reference' is not role=field \(e\.g\. query=prompt\)"):
        field_pairs(["query=prompt", "reference", "category"])
    assert issubclass(MappingError, ValueError)  # the CLI's error handling catches it as bad input


@pytest.mark.parametrize(("pairs", "role"), [(["=prompt"], ""), (["Query=prompt"], "Query"), (["text=x"], "text")])
def test_an_unknown_role_is_refused_with_the_roles_to_use(pairs, role):
    with pytest.raises(
        MappingError, match=f"unknown role {role!r} in a field mapping: use query, reference, category, id"
    ):
        parse_overrides(field_pairs(pairs))


def test_an_override_changes_only_the_roles_it_names():
    mapping = parse_overrides(field_pairs(["query=prompt"]))
    assert (mapping.name, mapping.pattern) == ("override", "*")
    assert mapping.query == ("prompt",)
    assert (mapping.reference, mapping.category, mapping.id) == (REFERENCE_FIELDS, CATEGORY_FIELDS, ID_FIELDS)
    assert mapping.join is None and mapping.drop_placeholders == ()


def test_several_fields_for_one_role_are_tried_in_order():
    mapping = parse_overrides({"reference": "answer, text,,", "id": "uid"})
    assert mapping.reference == ("answer", "text") and mapping.id == ("uid",)


def test_an_empty_query_means_texts_without_requests():
    mapping = parse_overrides(field_pairs(["query=", "reference=body"]))
    assert mapping.query is None and mapping.reference == ("body",)
    assert parse_overrides({"query": " , "}).query is None


def test_an_empty_category_or_id_reads_none_of_them():
    mapping = parse_overrides({"category": "", "id": ""})
    assert mapping.category == () and mapping.id == ()
    assert mapping.query == QUERY_FIELDS  # not texts without requests


def test_no_override_is_none():
    assert parse_overrides(None) is None and parse_overrides({}) is None


# -- describe --------------------------------------------------------------------------------------


def test_describe_names_every_role_in_one_line():
    line = describe(DEFAULT)
    assert line == (
        "default: query=query|prompt|instruction|writing_prompt|question, "
        "reference=reference|answer|response|reference_output|output|completion, "
        "category=category|type|genre, id=id|uid|key"
    )


def test_describe_says_what_missing_roles_mean():
    assert describe(REGISTERED["longbench-write"]) == (
        "longbench-write: query=prompt, reference=(none), category=type, id=(record key)"
    )
    texts = describe(parse_overrides({"query": "", "reference": "body"}))
    assert texts.startswith("override: query=(written by the generator), reference=body, ")
    assert "\n" not in texts


def test_describe_shows_the_join():
    line = describe(REGISTERED["hellobench-queries"])
    assert line.endswith(", join='_claude35_responses.jsonl'-sibling on id")
    assert "reference=(none)" in line and "category=category" in line


def test_describe_says_a_keyed_source_takes_its_id_from_the_record_key():
    assert describe(REGISTERED["eqbench-creative-writing"]).endswith("id=(record key)")


def test_an_empty_reference_field_is_refused():
    with pytest.raises(MappingError, match="reference needs a field"):
        parse_overrides(field_pairs(["reference="]))
