import json

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
