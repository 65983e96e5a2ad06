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
