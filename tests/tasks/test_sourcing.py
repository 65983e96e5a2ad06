import json

from reer.tasks.sourcing import Example, Rejected, normalize_text, read_source

GOOD = {"query": "Write a note.", "reference": "A" * 120 + "\n\n" + "B" * 120}


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_every_bad_record_is_rejected_with_its_reason_and_good_ones_load(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [
        json.dumps(GOOD).encode(),
        b'{"query": "broken", ',
        json.dumps({"query": "no answer here"}).encode(),
        json.dumps({"query": "empty", "reference": "   "}).encode(),
        b'{"query": "latin-1 \xe9", "reference": "x"}',
        json.dumps(["not", "an", "object"]).encode(),
        json.dumps({"prompt": "alias fields", "response": "C" * 130 + "\n\n" + "D" * 120}).encode(),
    ])
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
