import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reer.tasks.readers import Raw, read_raw
from reer.tasks.records import Rejected

PAIR = {"query": "Write a note.", "reference": "A" * 120 + "\n\n" + "B" * 120}


def split(records):
    records = list(records)
    raws = [r for r in records if isinstance(r, Raw)]
    rejects = [(r.source_record, r.reason) for r in records if isinstance(r, Rejected)]
    return raws, rejects


def test_csv_rows_with_quoted_newlines_ragged_rows_and_bad_bytes(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(
        b"query,reference\n"
        b'"Write a note.","First line\nsecond line"\n'
        b"only one field\n"
        b'"caf\xe9 latin-1",x\n'
        b"\n"
        b'"Write a poem.","Roses"\n'
    )
    raws, rejects = split(read_raw(path))
    assert [r.where for r in raws] == ["line 2", "line 7"]
    assert raws[0].data == {"query": "Write a note.", "reference": "First line\nsecond line"}
    assert rejects == [("line 4", "malformed_row"), ("line 5", "bad_encoding")]


def test_tsv_and_bom(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes("\ufeffquery\treference\nq\tr\n".encode())
    (raw,) = read_raw(path)
    assert raw.data == {"query": "q", "reference": "r"}


def test_parquet_rows_and_a_damaged_file(tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"query": ["a", "b"], "reference": ["x", None]}), path)
    raws, rejects = split(read_raw(path))
    assert [r.where for r in raws] == ["row 0", "row 1"] and raws[1].data["reference"] is None
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    (broken,) = read_raw(tmp_path / "broken.parquet")
    assert broken.reason == "unreadable_file" and "\n" not in broken.detail


def test_a_folder_saved_by_datasets_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([PAIR, PAIR]).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([PAIR]), "test": datasets.Dataset.from_list([PAIR])}
    ).save_to_disk(str(tmp_path / "two"))
    assert [r.where for r in read_raw(tmp_path / "one")] == ["row 0", "row 1"]
    assert [r.where for r in read_raw(tmp_path / "two")] == ["train row 0", "test row 0"]
    assert next(iter(read_raw(tmp_path / "one"))).data == PAIR


def test_a_plain_folder_is_an_unknown_format(tmp_path):
    (tmp_path / "folder").mkdir()
    (reject,) = read_raw(tmp_path / "folder")
    assert reject.reason == "unknown_format" and "datasets" in reject.detail


def test_text_file_is_one_record_and_bad_bytes_reject_it(tmp_path):
    (tmp_path / "good.txt").write_text("Once upon a time.\n\nThe end.", encoding="utf-8")
    (raw,) = read_raw(tmp_path / "good.txt")
    assert raw.where == "whole file" and raw.data == {"text": "Once upon a time.\n\nThe end."}
    (tmp_path / "bad.md").write_bytes(b"caf\xe9")
    (reject,) = read_raw(tmp_path / "bad.md")
    assert reject.reason == "bad_encoding" and "byte 3" in reject.detail


def test_json_keyed_records_keep_their_key(tmp_path):
    (tmp_path / "keyed.json").write_text(json.dumps({"a1": PAIR}))
    (raw,) = read_raw(tmp_path / "keyed.json")
    assert raw.key == "a1" and raw.where == "record a1"


def test_parquet_is_read_in_batches_and_damage_late_in_the_file_keeps_the_rows_before(tmp_path):
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"query": [f"q{i}" * 50 for i in range(3000)]}), path, row_group_size=1000)
    assert [r.where for r in read_raw(path)][-1] == "row 2999"
    data_page = pq.ParquetFile(path).metadata.row_group(2).column(0).data_page_offset
    raw = bytearray(path.read_bytes())
    raw[data_page + 40 : data_page + 400] = b"\xff" * 360
    path.write_bytes(bytes(raw))
    raws, rejects = split(read_raw(path))
    assert len(raws) >= 1000 and [r.where for r in raws] == [f"row {i}" for i in range(len(raws))]
    assert rejects == [(f"row {len(raws)} on", "unreadable_file")]


def test_a_large_csv_streams_with_rejects_in_place(tmp_path):
    path = tmp_path / "many.csv"
    rows = [f'"q{i}","line one\nline two {i}"' for i in range(500)]
    rows[250] = '"q250",x,extra'
    path.write_bytes(("query,reference\n" + "\n".join(rows) + "\n").encode())
    raws, rejects = split(read_raw(path))
    assert len(raws) == 499 and raws[-1].where == "line 999"
    assert rejects == [("line 502", "malformed_row")]


MIB = 1 << 20  # the readers' per-record limit is 1 MiB of text


def test_a_csv_field_over_the_csv_modules_default_limit_is_read(tmp_path):
    long = "word " * 40_000  # 200 KB: over csv's default field limit of 128 KiB, under the record limit
    path = tmp_path / "long.csv"
    path.write_text(f'query,reference\nq1,r1\nq2,"{long}"\nq3,r3\n', encoding="utf-8")
    raws, rejects = split(read_raw(path))
    assert [r.where for r in raws] == ["line 2", "line 3", "line 4"] and rejects == []
    assert raws[1].data["reference"] == long


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_an_over_size_csv_record_is_too_large_and_the_rows_after_it_are_read(tmp_path, suffix):
    sep = "\t" if suffix == ".tsv" else ","
    quoted = '"' + ('line with ""quotes"", commas\tand tabs\n' * 60_000) + '"'  # 2 MB over 60,000 lines
    unquoted = "x" * (2 * MIB)  # one 2 MiB line
    rows = ["q1" + sep + "r1", "q2" + sep + quoted, "q3" + sep + "r3", unquoted + sep + "r", "q5" + sep + "r5"]
    path = tmp_path / f"huge{suffix}"
    path.write_text(f"query{sep}reference\r\n" + "\r\n".join(rows) + "\r\n", encoding="utf-8")
    raws, rejects = split(read_raw(path))
    assert [(r.where, r.data) for r in raws] == [
        ("line 2", {"query": "q1", "reference": "r1"}),
        ("line 60004", {"query": "q3", "reference": "r3"}),
        ("line 60006", {"query": "q5", "reference": "r5"}),
    ]
    assert rejects == [("line 3", "too_large"), ("line 60005", "too_large")]
    too_large = [r for r in read_raw(path) if isinstance(r, Rejected)]
    assert all("1 MiB" in r.detail and len(r.payload or "") <= 1000 for r in too_large)


def test_an_over_size_csv_header_rejects_the_file(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("q" * (2 * MIB) + ",reference\nq,r\n", encoding="utf-8")
    assert split(read_raw(path)) == ([], [("line 1", "too_large")])


def test_an_over_size_jsonl_line_is_too_large_and_the_lines_after_it_are_read(tmp_path):
    path = tmp_path / "huge.jsonl"
    big = json.dumps({"query": "q", "reference": "y" * (2 * MIB)})
    lines = [json.dumps(PAIR), big, json.dumps(PAIR), "", json.dumps({"query": "q", "reference": "z" * (MIB - 40)})]
    path.write_text("\n".join(lines) + "\n" + json.dumps(PAIR), encoding="utf-8")  # the last line has no newline
    raws, rejects = split(read_raw(path))
    assert [r.where for r in raws] == ["line 1", "line 3", "line 5", "line 6"]
    assert rejects == [("line 2", "too_large")]


def test_a_huge_jsonl_line_is_never_held_whole_in_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "one_line.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        handle.write('{"query": "q", "reference": "')
        for _ in range(24):
            handle.write("y" * MIB)
        handle.write('"}\n' + json.dumps(PAIR) + "\n")
    tracemalloc.start()
    try:
        raws, rejects = split(read_raw(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rejects == [("line 1", "too_large")] and [r.where for r in raws] == ["line 2"]
    assert peak < 4 * MIB, f"peak {peak / MIB:.1f} MiB for a 24 MiB line"


def test_csv_records_around_the_limit_end_where_csv_ends_them(tmp_path, monkeypatch):
    """Quoted newlines, doubled quotes and every line end, with records on both sides of a small limit."""
    import random
    import re

    from reer.tasks import readers

    monkeypatch.setattr(readers, "RECORD_LIMIT", 64)
    rng = random.Random(7)
    line_ends, special = re.compile(r"\r\n|\r|\n"), re.compile('[,"\r\n]')
    text, expected = "query,reference\r\n", []
    for _ in range(400):
        row = ["q" + "".join(rng.choice('ab ,"\n\r\u00e9\u4e2d') for _ in range(rng.randrange(0, 50))) for _ in "qr"]
        quoted = [
            '"' + cell.replace('"', '""') + '"' if rng.random() < 0.3 or special.search(cell) else cell for cell in row
        ]
        record = ",".join(quoted) + rng.choice(["\n", "\r\n", "\r"])
        where = f"line {len(line_ends.findall(text)) + 1}"
        expected.append((where, "too_large") if len(record) > 64 else (where, dict(zip(["query", "reference"], row))))
        text += record
    path = tmp_path / "edges.csv"
    path.write_bytes(text.encode("utf-8"))
    got = [(r.where, r.data) if isinstance(r, Raw) else (r.source_record, r.reason) for r in read_raw(path)]
    assert sum(e[1] == "too_large" for e in expected) > 50 and got == expected


def _arrow_stream(path, rows):
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


@pytest.mark.parametrize("shard", ["../outside.arrow", "ABSOLUTE", "sub/../../outside.arrow", "/etc/passwd"])
def test_a_datasets_shard_outside_its_folder_is_rejected_unread(tmp_path, shard, monkeypatch):
    outside = tmp_path / "outside.arrow"
    _arrow_stream(outside, [PAIR])  # readable rows: reading them would be the bug
    shard = str(outside) if shard == "ABSOLUTE" else shard
    root = tmp_path / "data"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["good", "bad"]}))
    _arrow_stream(root / "good" / "data-00000-of-00001.arrow", [PAIR])
    (root / "good" / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (root / "bad" / "state.json").write_text(json.dumps({"_data_files": [{"filename": shard}]}))
    opened = []
    real_memory_map = pa.memory_map
    monkeypatch.setattr(pa, "memory_map", lambda path, *a: opened.append(path) or real_memory_map(path, *a))
    raws, rejects = split(read_raw(root))
    assert [r.where for r in raws] == ["good row 0"]
    assert rejects == [("(bad)", "unreadable_file")]
    detail = next(r for r in read_raw(root) if isinstance(r, Rejected)).detail
    assert shard in detail and "outside" in detail
    assert opened and all(Path(p).resolve().is_relative_to(root) for p in opened)  # the good shard only


# -- what the fuzz test (tests/tasks/test_fuzz_ingest.py) found --------------------------------


def keyed(pairs: list[tuple[str, object]]) -> str:
    """A JSON object written pair by pair, so a key may repeat; keys are written as given (escapes too)."""
    return "{" + ", ".join(f'"{key}": {json.dumps(value)}' for key, value in pairs) + "}"


def test_json_nested_past_the_recursion_limit_is_malformed_not_a_crash(tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    (tmp_path / "deep.jsonl").write_bytes(json.dumps(PAIR).encode() + b"\n" + deep + b"\n" + json.dumps(PAIR).encode())
    raws, rejects = split(read_raw(tmp_path / "deep.jsonl"))
    assert [r.where for r in raws] == ["line 1", "line 3"] and rejects == [("line 2", "malformed_json")]
    (tmp_path / "deep.json").write_bytes(deep)
    (reject,) = read_raw(tmp_path / "deep.json")
    assert (reject.source_record, reject.reason) == ("(file)", "malformed_json") and "deeply" in reject.detail


def test_an_unpaired_surrogate_escaped_in_json_is_bad_encoding_and_storable(tmp_path):
    lone = {"query": "Write a note \ud800.", "reference": "x"}  # json.dumps escapes it: valid JSON, never text
    paired = {"query": "Write a note \U0001f600.", "reference": "x"}  # an escaped pair is an emoji
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in [lone, paired, {"reference": ["\udfff"]}]))
    (tmp_path / "s.json").write_text(json.dumps([paired, lone]))
    (tmp_path / "keyed.json").write_text(keyed([("a", lone), ("\\udc80b", paired)]))
    got = {name: split(read_raw(tmp_path / name)) for name in ("s.jsonl", "s.json", "keyed.json")}
    assert got["s.jsonl"][1] == [("line 1", "bad_encoding"), ("line 3", "bad_encoding")]
    assert got["s.json"][1] == [("record 1", "bad_encoding")]
    assert got["keyed.json"][1] == [("record a", "bad_encoding"), ("record \\udc80b", "bad_encoding")]
    assert got["s.jsonl"][0][0].data["query"].endswith("\U0001f600.")
    for name in got:
        for r in read_raw(tmp_path / name):
            text = r.detail + r.source_record + (r.payload or "") if isinstance(r, Rejected) else r.payload
            text.encode("utf-8")  # what reaches the store has no lone surrogate left
            assert isinstance(r, Raw) or "\\ud" in r.detail.lower()


def test_a_repeated_key_in_a_keyed_json_object_is_a_reject_not_a_silent_loss(tmp_path):
    first, second, third = ({**PAIR, "query": f"Write note {i}."} for i in range(3))
    (tmp_path / "keyed.json").write_text(keyed([("7", first), ("8", PAIR), ("7", second), ("7", third)]))
    raws, rejects = split(read_raw(tmp_path / "keyed.json"))
    assert [(r.where, r.data) for r in raws] == [("record 7", first), ("record 8", PAIR)]
    assert rejects == [("record 7 (repeat 1)", "duplicate_key"), ("record 7 (repeat 2)", "duplicate_key")]
    nested = {"query": "q", "reference": "r"}
    (tmp_path / "nested.json").write_text('[{"query": "q", "reference": "x", "reference": "r"}]')
    assert next(iter(read_raw(tmp_path / "nested.json"))).data == nested  # inside a record, json's rule stays


def test_a_json_key_that_would_not_print_is_escaped_in_its_location_and_kept_as_the_id(tmp_path):
    (tmp_path / "keyed.json").write_text(keyed([("\\u001b[2J\\u202ex\\u2028", PAIR)]))  # clear screen, reverse
    (raw,) = read_raw(tmp_path / "keyed.json")
    assert raw.where == "record \\u001b[2J\\u202ex\\u2028" and raw.key == "\x1b[2J\u202ex\u2028"


@pytest.mark.parametrize("sep", [",", "\t"])
def test_a_broken_csv_record_is_rejected_and_reading_goes_on(tmp_path, sep):
    path = tmp_path / ("broken.tsv" if sep == "\t" else "broken.csv")
    path.write_text(
        f'query{sep}reference\n"Write a note."x{sep}text after a quote\n"Write a poem."{sep}"Roses\nare red"\n',
        encoding="utf-8",
    )
    got = [(r.where, r.data) if isinstance(r, Raw) else (r.source_record, r.reason, r.payload) for r in read_raw(path)]
    assert got == [
        ("line 2", "malformed_row", f'"Write a note."x{sep}text after a quote\n'),
        ("line 3", {"query": "Write a poem.", "reference": "Roses\nare red"}),
    ]


def test_an_unclosed_csv_quote_is_one_reject_naming_the_lines_it_swallowed(tmp_path):
    path = tmp_path / "unclosed.csv"
    path.write_text('query,reference\nq1,r1\nq2,"never closed\nq3,r3\nq4,r4\n', encoding="utf-8")
    records = list(read_raw(path))
    assert [r.where for r in records if isinstance(r, Raw)] == ["line 2"]
    (reject,) = (r for r in records if isinstance(r, Rejected))
    assert (reject.source_record, reject.reason) == ("line 3", "malformed_row")
    assert "lines 3-5" in reject.detail and reject.payload == 'q2,"never closed\nq3,r3\nq4,r4\n'
    path.write_text('"query,reference\nq1,r1\nq2,r2', encoding="utf-8")  # the header's quote: no columns at all
    (header,) = read_raw(path)
    assert (header.source_record, header.reason) == ("line 1", "malformed_row")
    assert "lines 1-3" in header.detail and "not read" in header.detail and "q2,r2" in header.payload


def test_a_csv_row_of_empty_fields_is_a_record_and_a_blank_line_is_not(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text('query,reference\n,\n\n   \n"",""\nq,r\n', encoding="utf-8")
    raws, rejects = split(read_raw(path))
    assert [(r.where, r.data) for r in raws] == [
        ("line 2", {"query": "", "reference": ""}),
        ("line 5", {"query": "", "reference": ""}),
        ("line 6", {"query": "q", "reference": "r"}),
    ]


def test_a_jsonl_line_blank_only_to_python_is_malformed_not_skipped(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes("\x1c\n\x0b\x0c\n\u3000\n\u2028\n \t\r\n\n".encode() + json.dumps(PAIR).encode())
    raws, rejects = split(read_raw(path))
    assert [r.where for r in raws] == ["line 7"]
    assert rejects == [(f"line {i}", "malformed_json") for i in range(1, 5)]  # lines 5 and 6 are JSON whitespace


def test_every_format_rejects_a_record_over_the_limit(tmp_path, monkeypatch):
    from reer.tasks import readers

    monkeypatch.setattr(readers, "RECORD_LIMIT", 1000)
    big, small = {"query": "q", "reference": "y" * 2000}, {"query": "q", "reference": "r"}
    (tmp_path / "list.json").write_text(json.dumps([small, big, small]))
    pq.write_table(pa.Table.from_pylist([small, big, small]), tmp_path / "rows.parquet")
    (tmp_path / "data").mkdir()
    _arrow_stream(tmp_path / "data" / "data-00000-of-00001.arrow", [small, big, small])
    (tmp_path / "data" / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    (tmp_path / "long.txt").write_text("y" * 2000)
    for name, where in [("list.json", "record"), ("rows.parquet", "row"), ("data", "row")]:
        raws, rejects = split(read_raw(tmp_path / name))
        assert [r.where for r in raws] == [f"{where} 0", f"{where} 2"] and rejects == [(f"{where} 1", "too_large")]
    (reject,) = read_raw(tmp_path / "long.txt")
    assert (reject.source_record, reject.reason) == ("whole file", "too_large") and len(reject.payload) <= 500
