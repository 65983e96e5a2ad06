"""Format readers: every file yields raw records (where, data) or rejects; none raises for bad content.

Formats: JSONL, JSON (a list, or an object keyed by id), CSV/TSV, Parquet, a folder written
by `datasets.save_to_disk` (read with pyarrow, so `datasets` itself is not needed), and
plain text (.txt/.md: the whole file is one text with no request).
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reer.tasks.records import Rejected

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", *TEXT_SUFFIXES)

# The most text one record may hold: a JSONL line or text file (bytes), a CSV/TSV record, a JSON
# element or a table row (characters); a longer one is a `too_large` reject and reading goes on after
# it. A request with its answer is a few KiB, the longest long-form answers some 100 KiB, and anything
# near 1 MiB is far past every scorer's context window (`too_long` would reject it later anyway). In
# JSONL, CSV/TSV and text files the bound keeps memory per record at a few MiB whatever a file holds:
# an over-size record is skipped in bounded reads, never held whole (a JSON file is parsed whole).
RECORD_LIMIT = 1 << 20
PREVIEW = 500  # characters of an over-size record kept as its reject's payload
_JSON_BLANK = " \t\r\n"  # JSON's whitespace: a JSONL line of nothing else is no record (str.strip takes \x1c too)
# An escaped surrogate: JSON may spell one that pairs with nothing, and such a string cannot be stored as text.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_UNSHOWN = ("Cc", "Cf", "Cs", "Zl", "Zp")  # what a location never shows raw


@dataclass(frozen=True)
class Raw:
    """One record as read: where it sits in its file, its parsed data, and its raw text."""

    where: str
    data: Any
    payload: str | None = None
    key: str | None = None  # the record's key in a keyed JSON object


def is_text_file(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES


def read_raw(path: Path) -> Iterator[Raw | Rejected]:
    """Raw records of any supported file or folder; a missing file or unknown format is one reject."""
    source = str(path)
    if not path.exists():
        yield Rejected(source, "(file)", "missing_file", "the file does not exist")
        return
    if path.is_dir():
        yield from _read_dataset_folder(path, source)
        return
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        yield Rejected(
            source,
            "(file)",
            "unknown_format",
            f"unknown format {path.suffix or '(no suffix)'}: use {', '.join(SUFFIXES)} or a datasets folder",
        )
        return
    yield from reader(path, source)


def _encoding_detail(error: UnicodeDecodeError) -> str:
    return f"not UTF-8 ({error.reason} at byte {error.start})"


# Hand-written over polars/pyarrow: as fast, streams instead of holding the file, one bad line is one reject.
def _read_jsonl(path: Path, source: str) -> Iterator[Raw | Rejected]:
    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(RECORD_LIMIT + 1):  # bounded: a 100 MB line is never read whole
            number += 1
            where = f"line {number}"
            if len(raw) > RECORD_LIMIT and not raw.endswith(b"\n"):
                size = len(raw) + _skip_line(handle)
                yield _too_large(
                    source, where, f"a line of {size:,} bytes", raw[: PREVIEW * 4].decode("utf-8", "replace")
                )
                continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                yield Rejected(source, where, "bad_encoding", _encoding_detail(error), raw.decode("utf-8", "replace"))
                continue
            if not line.strip(_JSON_BLANK):
                continue
            line = line.rstrip("\r\n")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield Rejected(
                    source,
                    where,
                    "malformed_json",
                    f"malformed JSON ({error.msg.removesuffix(' at')} at column {error.colno})",
                    line,
                )
                continue
            except RecursionError:  # Python's parser recurses once per level: a deep enough nest is not a crash
                yield Rejected(source, where, "malformed_json", "malformed JSON (nested too deeply to read)", line)
                continue
            surrogate = _ESCAPED_SURROGATE.search(line) and _json_payload(record)[1]
            yield _bad_surrogate(source, where, surrogate, line) if surrogate else Raw(where, record, line)


def _skip_line(handle) -> int:
    """Read on to the end of the line in bounded reads; returns the bytes skipped."""
    skipped = 0
    while chunk := handle.readline(1 << 16):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _too_large(source: str, where: str, what: str, head: str) -> Rejected:
    preview = head[:PREVIEW].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return Rejected(
        source, where, "too_large", f"{what}, over the {RECORD_LIMIT / (1 << 20):g} MiB limit per record", preview
    )


def _json_payload(record: Any) -> tuple[str, str | None]:
    """A parsed record as JSON text, and its first unpaired surrogate if any (the text then keeps it escaped)."""
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # nothing holding it can be stored or hashed
        return json.dumps(record), f"\\u{ord(error.object[error.start]):04x}"
    return text, None


def _bad_surrogate(source: str, where: str, surrogate: str, payload: str) -> Rejected:
    detail = f"not text (an unpaired surrogate {surrogate} escaped in the JSON)"
    return Rejected(source, where, "bad_encoding", detail, payload)


class _Repeated(dict):
    """A JSON object with a repeated key: a dict as json builds it, and every (key, value) in order."""

    pairs: list[tuple[str, Any]]


def _object(pairs: list[tuple[str, Any]]) -> dict:
    """json's object hook: the usual dict, which for an object that repeats a key also keeps all its pairs."""
    data = dict(pairs)
    if len(data) == len(pairs):
        return data
    repeated = _Repeated(data)
    repeated.pairs = pairs
    return repeated


def _read_json(path: Path, source: str) -> Iterator[Raw | Rejected]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"), object_pairs_hook=_object)
    except UnicodeDecodeError as error:
        yield Rejected(source, "(file)", "bad_encoding", _encoding_detail(error))
        return
    except json.JSONDecodeError as error:
        yield Rejected(
            source,
            "(file)",
            "malformed_json",
            f"malformed JSON ({error.msg.removesuffix(' at')} at line {error.lineno})",
        )
        return
    except RecursionError:
        yield Rejected(source, "(file)", "malformed_json", "malformed JSON (nested too deeply to read)")
        return
    if isinstance(data, dict):
        # json keeps the last value of a repeated key and drops the others unseen: each is a record here
        uses: dict[str, int] = {}
        for key, record in data.pairs if isinstance(data, _Repeated) else data.items():
            uses[key] = repeat = uses.get(key, 0) + 1
            name = _shown(key)
            surrogate = _json_payload(key)[1] if name != key else None
            if repeat > 1:
                detail = f"the key {name!r} came before in this object; the record under its first use is read"
                where = f"record {name} (repeat {repeat - 1})"
                yield Rejected(source, where, "duplicate_key", detail, _json_payload(record)[0])
            elif surrogate:
                yield _bad_surrogate(source, f"record {name}", surrogate, _json_payload(record)[0])
            else:
                yield _json_record(source, f"record {name}", record, key=key)
    elif isinstance(data, list):
        for index, record in enumerate(data):
            yield _json_record(source, f"record {index}", record)
    else:
        yield Rejected(source, "(file)", "not_a_collection", "expected a JSON list or object of records")


def _shown(key: str) -> str:
    """A key as its record's location shows it: control, format (bidi) and surrogate characters as escapes.

    The location reaches the terminal in the line that names a reject: a key must not move the
    cursor, colour the screen or reverse what follows. The key itself stays the record's id.
    """
    if key.isprintable():
        return key
    return "".join(c if unicodedata.category(c) not in _UNSHOWN else f"\\u{ord(c):04x}" for c in key)


def _json_record(source: str, where: str, record: Any, key: str | None = None) -> Raw | Rejected:
    """One element of a JSON file, or its reject: over the record limit, or not text."""
    payload, surrogate = _json_payload(record)
    if len(payload) > RECORD_LIMIT:
        return _too_large(source, where, f"a record of {len(payload):,} characters", payload[: PREVIEW * 4])
    if surrogate:
        return _bad_surrogate(source, where, surrogate, payload)
    return Raw(where, record, payload, key=key)


# Hand-written: polars/pyarrow alone are faster but fail the file or pad a bad row; with line numbers, no faster.
def _read_csv(path: Path, source: str) -> Iterator[Raw | Rejected]:
    # surrogateescape keeps undecodable bytes visible per row, so one bad row never costs the file;
    # the file is read as a stream, one row at a time, and no row over RECORD_LIMIT is ever held.
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # csv's own field limit (128 KiB by default) would stop the file at a long field: let fields up
    # to the record limit parse; _RecordLines makes longer records `too_large` before csv sees them.
    csv.field_size_limit(max(csv.field_size_limit(), RECORD_LIMIT))
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        lines = _RecordLines(handle, delimiter)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        try:
            lines.start()
            header = next(reader)
        except StopIteration:
            return
        except _Oversize:
            yield lines.skip_record(source, 1, "a header")
            return
        except csv.Error as error:  # without its columns no row can be read: this one reject stands for the file
            lines.skip_rest()
            detail = f"unreadable header ({error}{lines.span(1)}); the file is not read"
            yield Rejected(source, "line 1", "malformed_row", detail, lines.text())
            return
        yield from _csv_rows(reader, lines, header, source)


def _csv_rows(reader, lines: _RecordLines, header: list[str], source: str) -> Iterator[Raw | Rejected]:
    while True:
        start = lines.start()
        try:
            row = next(reader)
        except StopIteration:
            return
        except _Oversize:
            yield lines.skip_record(source, start, "a record")
            continue
        except csv.Error as error:
            # csv drops the rest of the line it stopped in and reads on from the next one; a quote that
            # never closed has run to the end of the file, which the span says
            detail = f"malformed CSV ({error}{lines.span(start)})"
            yield Rejected(source, f"line {start}", "malformed_row", detail, lines.text())
            continue
        where = f"line {start}"
        payload = ",".join(row)
        if len(row) < 2 and not "".join(row).strip(" \t"):  # a blank line; a row of empty fields is a record
            continue
        if _has_bad_bytes(payload):
            yield Rejected(
                source,
                where,
                "bad_encoding",
                "not UTF-8 (undecodable bytes in this row)",
                payload.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
            )
        elif len(row) != len(header):
            yield Rejected(
                source, where, "malformed_row", f"{len(row)} fields where the header has {len(header)}", payload
            )
        else:
            yield Raw(where, dict(zip(header, row)), payload)


class _Oversize(Exception):
    """The record being read passed RECORD_LIMIT."""


# Where a CSV record stands after some text (quote '"', doubled inside quotes): enough to find its end.
_START, _FIELD, _QUOTED, _QUOTE, _END = range(5)


class _RecordLines:
    """Physical lines for csv.reader, in bounded reads, that raise _Oversize past RECORD_LIMIT per record.

    A line cut by the bound never reaches csv (it raises first); skip_record then reads on, past
    quoted newlines, to the end of the over-size record, holding at most RECORD_LIMIT characters.
    """

    def __init__(self, handle, delimiter: str) -> None:
        self.handle, self.delimiter = handle, delimiter
        self.unquoted = re.compile(f"[{re.escape(delimiter)}\r\n]")
        self.lines = 0  # complete lines read
        self.used = 0  # characters of the current record so far
        self.held: list[str] = []  # its lines so far
        self.pending = ""  # one character read ahead after a lone "\r"
        self.open_line = False  # whether the last line read has no line end (the file's last)

    def start(self) -> int:
        """A new record begins; returns its line number."""
        self.used, self.held = 0, []
        return self.lines + 1

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = self._read(RECORD_LIMIT + 1 - self.used)
        if not line:
            raise StopIteration
        self.used += len(line)
        self.held.append(line)
        if self.used > RECORD_LIMIT:
            raise _Oversize
        return line

    def _read(self, limit: int) -> str:
        if self.pending:
            head, self.pending = self.pending, ""
            line = head if head == "\r" else head + self.handle.readline(limit - 1)
        else:
            line = self.handle.readline(limit)
        end = line[-1:]
        if end == "\r":  # a "\r\n" cut by the bound, or a lone "\r" line end: look one ahead
            after = self.handle.readline(1)
            if after == "\n":
                line += after
            else:
                self.pending = after
        if end in ("\n", "\r"):
            self.lines += 1
        if line:
            self.open_line = end not in ("\n", "\r")
        return line

    def span(self, start: int) -> str:
        """The span ", lines START-END" when the record read since line `start` took more lines than that one, else ""."""
        end = self.lines + self.open_line
        return f", lines {start}-{end}" if end > start else ""

    def text(self) -> str:
        """The current record's text as read so far (at most RECORD_LIMIT), bad bytes shown as U+FFFD."""
        return "".join(self.held).encode("utf-8", "surrogateescape").decode("utf-8", "replace")

    def skip_rest(self) -> None:
        """Read on to the end of the file, holding at most RECORD_LIMIT characters of it."""
        while line := self._read(RECORD_LIMIT):
            if self.used < RECORD_LIMIT:
                self.held.append(line[: RECORD_LIMIT - self.used])
                self.used += len(self.held[-1])

    def skip_record(self, source: str, start: int, what: str) -> Rejected:
        """Read on to the end of the over-size record; it becomes a `too_large` reject."""
        size, head, state = self.used, self.held[0], _START
        for line in self.held:
            state = self._scan(line, state)
        self.held = []
        while state != _END and (line := self._read(RECORD_LIMIT)):
            size += len(line)
            state = self._scan(line, state)
        return _too_large(source, f"line {start}", f"{what} of {size:,} characters{self.span(start)}", head)

    def _scan(self, text: str, state: int) -> int:
        """The state after `text`; _END at a line end outside quotes (lines end there, so nothing follows)."""
        i, n = 0, len(text)
        while i < n and state != _END:
            if state == _QUOTED:
                i = text.find('"', i) + 1
                state = _QUOTE if i else _QUOTED
                i = i or n
                continue
            c = text[i]
            if state == _QUOTE and c == '"':
                state = _QUOTED
            elif c in "\r\n":
                state = _END
            elif c == self.delimiter:
                state = _START
            elif state == _START and c == '"':
                state = _QUOTED
            else:
                found = self.unquoted.search(text, i)
                state, i = _FIELD, (found.start() if found else n)
                continue
            i += 1
        return state


def _has_bad_bytes(text: str) -> bool:
    """Whether surrogateescape kept undecodable bytes in it (strict encoding refuses them; 5x a regex's speed)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# pyarrow's batch reader (library): columnar binary has no per-line damage to locate; rows before damage are kept.
def _read_parquet(path: Path, source: str) -> Iterator[Raw | Rejected]:
    import pyarrow.parquet as pq

    read = 0  # pyarrow reads it in batches: memory holds one row group, and rows before damage are kept
    try:
        for raw in _batch_rows(pq.ParquetFile(path).iter_batches(batch_size=1024), "row", source):
            read += 1
            yield raw
    except Exception as error:  # pyarrow raises several types for a damaged or non-Parquet file
        first = (str(error).splitlines() or [type(error).__name__])[0]
        where = f"row {read} on" if read else "(file)"
        yield Rejected(source, where, "unreadable_file", f"not a readable Parquet file ({first})")


def _batch_rows(batches, label: str, source: str) -> Iterator[Raw | Rejected]:
    index = 0
    for batch in batches:
        for record in batch.to_pylist():
            where, payload = f"{label} {index}", json.dumps(record, ensure_ascii=False, default=str)
            if len(payload) > RECORD_LIMIT:
                yield _too_large(source, where, f"a row of {len(payload):,} characters", payload[: PREVIEW * 4])
            else:
                yield Raw(where, record, payload)
            index += 1


def _read_dataset_folder(path: Path, source: str) -> Iterator[Raw | Rejected]:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    if (path / "dataset_dict.json").exists():
        try:
            splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (ValueError, KeyError, OSError) as error:
            yield Rejected(
                source, "(folder)", "unreadable_file", f"dataset_dict.json is unreadable ({error.__class__.__name__})"
            )
            return
        for split in splits:
            yield from _read_split(path / split, source, f"{split} row")
    elif (path / "state.json").exists():
        yield from _read_split(path, source, "row")
    else:
        yield Rejected(
            source,
            "(folder)",
            "unknown_format",
            "a folder, but not one saved by datasets (no state.json or dataset_dict.json)",
        )


def _read_split(folder: Path, source: str, label: str) -> Iterator[Raw | Rejected]:
    import pyarrow as pa

    try:
        files = [f["filename"] for f in json.loads((folder / "state.json").read_text(encoding="utf-8"))["_data_files"]]
        tables = []
        for name in files:
            with pa.memory_map(str(_shard(folder, name))) as handle:
                tables.append(pa.ipc.open_stream(handle).read_all())
    except Exception as error:  # a missing shard, bad JSON or a damaged Arrow stream
        first = str(error).splitlines()[0] if str(error) else ""
        yield Rejected(
            source,
            f"({folder.name})",
            "unreadable_file",
            f"a datasets folder that cannot be read ({error.__class__.__name__}: {first})",
        )
        return
    if tables:
        yield from _batch_rows(pa.concat_tables(tables).to_batches(max_chunksize=1024), label, source)


def _shard(folder: Path, name: str) -> Path:
    """A shard state.json names: a relative path inside its split's folder, or ValueError (never read)."""
    path = folder / name
    if Path(name).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"shard {name!r} lies outside the split's folder")
    return path


def _read_text(path: Path, source: str) -> Iterator[Raw | Rejected]:
    size = path.stat().st_size
    if size > RECORD_LIMIT:  # the whole file is one record: never read past the limit
        with path.open("rb") as handle:
            head = handle.read(PREVIEW * 4).decode("utf-8", "replace")
        yield _too_large(source, "whole file", f"a text of {size:,} bytes", head)
        return
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        yield Rejected(source, "whole file", "bad_encoding", _encoding_detail(error), raw.decode("utf-8", "replace"))
        return
    yield Raw("whole file", {"text": text}, None)


_READERS = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_csv,
    ".parquet": _read_parquet,
    **{suffix: _read_text for suffix in TEXT_SUFFIXES},
}
