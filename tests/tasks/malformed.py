"""Seeded malformed input files for every reader, and where each of their records must land: the fuzz ground truth.

What one record is, per format (what "every record read" counts):

- JSONL: a physical line, up to its "\\n"; a line of JSON whitespace only (space, tab, CR) is none.
- JSON: an element of the top-level list, or a value of the top-level object (a repeated key too; a
  key that would not print is escaped in the location).
- CSV, TSV: a record after the header as the writer emitted it, quoted line breaks included; a blank line is none.
- Parquet: a row. A datasets folder: a row of one of its splits.
- .txt, .md: the whole file.

The accounting rule: every record leaves exactly one row in source_records, at its `Record.where`.
Where breakage hides the boundaries, one reject stands for the records it swallowed (`covers`) and
its detail names the span (`detail`): a file or split that cannot be parsed at all, an unreadable
CSV header, and a CSV quote that never closes (it runs to the end of the file). A file with no
record is one `empty_file` reject at "(file)" that stands for none.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MIB = 1 << 20
LINE_BREAKS = re.compile(r"\r\n|\r|\n")

TOPICS = ("the sea", "a lighthouse", "winter", "a market", "an old clock", "rain", "a night train", "the moon")
CONTROLS = "\x00\x01\x07\x08\x0b\x0c\x1b\x1c\x1f\x7f\x80\x85\x9b\x9f"  # C0, DEL and C1 (NEL, CSI)
FORMATS = "\u202e\u202d\u202a\u202b\u202c\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\u200d\u2060\ufeff\u00ad"
# Keys of a keyed JSON object and their locations: bidi, escape sequences and a lone surrogate are shown escaped.
KEYS = (
    ("k", "k"),
    ("\u202ek", "\\u202ek"),
    ("key with spaces ", "key with spaces "),
    ("键", "键"),
    ("", ""),
    ("\x1b[31m", "\\u001b[31m"),
    ("\ud800", "\\ud800"),
)
BAD_BYTES = (b"\xff", b"\xfe\xfe", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"caf\xe9")


@dataclass(frozen=True)
class Record:
    """Where one record must land: its location, and its status or reject reason (None: several are fair)."""

    where: str
    expect: str | None
    covers: int = 1  # the generated records this one row stands for
    detail: str | None = None  # text its reject's detail must hold


@dataclass
class Written:
    """One generated file or folder and the rows its records must leave."""

    path: Path
    records: list[Record] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(r.covers for r in self.records)


class Generator:
    """Writes the files in reading order, so a duplicate always follows the record it repeats."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder, self.rng, self.serial = folder, random.Random(seed), 0
        self.loaded: list[dict] = []  # pairs expected to load, for duplicates of them
        self.written: list[Written] = []

    def pick(self, **weights: int) -> str:
        return self.rng.choices(list(weights), list(weights.values()))[0]

    # -- texts ------------------------------------------------------------------------------

    def pair(self) -> dict:
        """A fresh valid pair; the serial number keeps every pair distinct after normalization."""
        self.serial += 1
        n = self.serial
        if self.rng.random() < 0.15:
            return {
                "query": f"写一篇关于第{n}座灯塔的短文。",
                "reference": f"灯塔{n}号立在岩石上。\n\n夜里它照着海面。",
            }
        topic = self.rng.choice(TOPICS)
        line_end = self.rng.choice(["\n\n", "\r\n\r\n", "\n\n\n\n"])
        return {
            "query": f"Write note {n} about {topic}.",
            "reference": f"Note {n} begins with {topic}.{line_end}It ends.",
        }

    def noisy(self, text: str) -> str:
        """The text with control, bidi, zero-width or separator characters spliced in; hygiene removes them."""
        pool = self.rng.choice([CONTROLS, FORMATS, CONTROLS + FORMATS, "\u2028\u2029\u00a0\u3000 \t"])
        chars = list(text)
        for _ in range(self.rng.randint(1, 6)):
            chars.insert(self.rng.randrange(len(chars) + 1), self.rng.choice(pool))
        return "".join(chars)

    def unsupported(self) -> dict:
        self.serial += 1
        return {
            "query": f"Напишите рассказ номер {self.serial} о маяке.",
            "reference": "Маяк стоял на скале.\n\nНочью.",
        }

    def duplicate(self) -> dict | None:
        """An earlier loaded pair again, spelled so that it normalizes to the same text."""
        if not self.loaded:
            return None
        pair = dict(self.rng.choice(self.loaded))
        pair["query"] = self.rng.choice(["", "  ", "\u200b", "\u202e"]) + pair["query"] + self.rng.choice(["", " \r\n"])
        return pair

    def huge(self, size: int) -> str:
        return ("A huge field keeps going. " * (size // 26 + 1))[:size]

    # -- one JSON record --------------------------------------------------------------------

    def json_record(self) -> tuple[object, str | None]:
        """A JSON value for one record and what must become of it."""
        pair = self.pair()
        kind = self.pick(
            valid=18, alias=4, noisy=14, duplicate=6, bad_query=5, bad_reference=5, null=3, missing_query=3,
            missing_reference=3, empty_query=3, empty_reference=3, not_an_object=4, unsupported=3, junk=6,
            surrogate=3, paired_surrogate=2, nested=3, medium=1,
        )  # fmt: skip
        if kind == "valid":
            return self.loads(pair), "loaded"
        if kind == "alias":
            return self.loads(pair) and {"prompt": pair["query"], "response": pair["reference"]}, "loaded"
        if kind == "noisy":
            return self.loads({key: self.noisy(value) for key, value in pair.items()}), "loaded"
        if kind == "duplicate":
            again = self.duplicate()
            return (again, "duplicate") if again else (self.loads(pair), "loaded")
        if kind in ("bad_query", "bad_reference"):
            wrong = self.rng.choice([42, -1.5, True, False, ["a", "list"], {"a": "dict"}, [], {}])
            return {**pair, kind.split("_")[1]: wrong}, kind
        if kind == "null":
            role = self.rng.choice(["query", "reference"])
            return {**pair, role: None}, f"missing_{role}"
        if kind.startswith("missing_"):
            return {k: v for k, v in pair.items() if k != kind.split("_")[1]}, kind
        if kind.startswith("empty_"):
            role = kind.split("_")[1]
            return {**pair, role: self.rng.choice(["", "   ", "\n\t\r\n", "\u200b\u202e", "\x00\x1f"])}, kind
        if kind == "not_an_object":
            return self.rng.choice(["just text", 7, 3.25, None, True, [pair], [[]]]), "not_an_object"
        if kind == "unsupported":
            return self.unsupported(), "unsupported_language"
        if kind == "junk":  # odd extra fields, categories and ids beside a good pair
            extra = {
                "category": self.rng.choice([{"a": [1, {"b": None}]}, 12, "\u202ePoetry\u202c", "x" * 5000, "", [1]]),
                "id": self.rng.choice([[1, 2], {"k": "v"}, 3.5, "id\u202e\x00", "", False]),
                "extra": self.nested(self.rng.randint(1, 300)),
                "\u202ekey\x00": "odd key",
            }
            return self.loads(pair) and {**pair, **extra}, "loaded"
        if kind == "surrogate":  # an unpaired UTF-16 surrogate, escaped: valid JSON, never text
            role = self.rng.choice(["query", "reference", "category", "id"])
            return {**pair, role: pair.get(role, "") + self.rng.choice(["\ud800", "\udfff", "\udc80x"])}, "bad_encoding"
        if kind == "paired_surrogate":  # an emoji written as an escaped surrogate pair is ordinary text
            return self.loads({**pair, "reference": pair["reference"] + " \U0001f600"}), "loaded"
        if kind == "nested":
            return {**pair, "reference": self.nested(self.rng.randint(2, 400))}, "bad_reference"
        return self.loads({**pair, "reference": pair["reference"] + " more" * 40_000}), "loaded"  # 200 KB

    def loads(self, pair: dict) -> dict:
        """Note a pair that must load, so later duplicates can repeat it."""
        self.loaded.append(pair)
        return pair

    def nested(self, depth: int) -> object:
        value: object = "deep"
        for i in range(depth):
            value = [value] if i % 2 else {"k": value}
        return value

    # -- files ------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.folder / f"{len(self.written):02d}-{name}"

    def add(self, path: Path, records: list[Record]) -> None:
        wheres = [r.where for r in records]
        assert len(set(wheres)) == len(wheres), f"{path.name}: a location twice"
        self.written.append(Written(path, records))

    def jsonl(self, name: str, count: int, huge: tuple[int, ...] = ()) -> None:
        lines: list[bytes] = []
        records: list[Record] = []
        huge_at = dict(zip(self.rng.sample(range(1, count), len(huge)), huge))
        for i in range(count):
            if i in huge_at:
                line = json.dumps({"query": "q", "reference": self.huge(huge_at[i])}).encode()
                expect = "too_large"
            else:
                line, expect = self.jsonl_line(first=i == 0)
            lines.append(line)
            records.append(Record(f"line {len(lines)}", expect))
            while self.rng.random() < 0.05:  # blank lines are no records
                lines.append(self.rng.choice([b"", b"  ", b"\t\r", b" \r"]))
        ending = self.rng.choice([b"\n", b"\r\n"])
        data = ending.join(lines) + self.rng.choice([ending, b""])
        path = self.path(name)
        path.write_bytes(data)
        self.add(path, records)

    def jsonl_line(self, first: bool) -> tuple[bytes, str | None]:
        """One JSONL line (no "\\n" in it) and what must become of it; line 1 may carry a UTF-8 BOM, so no BOM there."""
        kind = self.pick(
            record=70, truncated=8, garbage=4, raw_control=4, bad_bytes=6, bom=0 if first else 2, deep=1, blank_like=2
        )
        if kind == "record":
            value, expect = self.json_record()
            text = json.dumps(value, ensure_ascii=self.rng.random() < 0.5 or expect == "bad_encoding")
            return text.encode(), expect
        valid = json.dumps(self.pair(), ensure_ascii=False).encode()
        if kind == "truncated":  # a cut inside a multi-byte character leaves bytes that are not UTF-8
            cut = valid[: self.rng.randrange(1, len(valid) - 1)]
            return cut, "malformed_json" if _is_utf8(cut) else "bad_encoding"
        if kind == "garbage":
            return valid + self.rng.choice([b" x", b"}", b",", b"\x00", b"\x1c", b'{"a": 1}']), "malformed_json"
        if kind == "raw_control":  # a control character unescaped inside a JSON string is invalid JSON
            cut = valid.index(b'"reference": "') + 14
            control = self.rng.choice([b"\t", b"\x00", b"\x01", b"\x1f", b"\r"])
            return valid[:cut] + control + valid[cut:], "malformed_json"
        if kind == "bad_bytes":
            cut = valid.index(b'"reference": "') + 14
            return valid[:cut] + self.rng.choice(BAD_BYTES) + valid[cut:], "bad_encoding"
        if kind == "bom":  # a UTF-16 BOM is not UTF-8; a UTF-8 BOM after line 1 is not JSON
            return self.rng.choice([(b"\xff\xfe" + valid, "bad_encoding"), (b"\xef\xbb\xbf" + valid, "malformed_json")])
        if kind == "deep":
            depth = self.rng.choice([5_000, 100_000])
            return b"[" * depth + b"]" * depth, "malformed_json"
        return self.rng.choice([b"\x1c", b"\x0b\x0c", b"\x00", "\u3000".encode(), "\u2028".encode()]), "malformed_json"

    def utf16(self, name: str, count: int, header: str = "") -> None:
        """A file saved as UTF-16: its physical lines (as bytes) are its records, none of them text."""
        rows = [json.dumps(self.pair()) if name.endswith(".jsonl") else "Write a note,It ends." for _ in range(count)]
        encoding = self.rng.choice(["utf-16", "utf-16-be"])  # utf-16 writes a little-endian BOM
        data = (header + "\n".join(rows) + "\n").encode(encoding)
        if encoding == "utf-16-be":
            data = b"\xfe\xff" + data
        pieces = data.split(b"\n")
        first = 2 if header else 1
        path = self.path(name)
        path.write_bytes(data)
        lines = pieces[1:] if header else pieces
        self.add(path, [Record(f"line {first + i}", None) for i, piece in enumerate(lines) if piece])

    def json_file(self, name: str, count: int, keyed: bool, huge: tuple[int, ...] = ()) -> None:
        values, records = [], []
        for i in range(count):
            key, shown = self.key(i) if keyed else (str(i), str(i))
            if huge and i == count // 2:
                value, expect = {"query": "q", "reference": self.huge(huge[0])}, "too_large"
            elif "\ud800" in key:  # a key that is not text: its record goes no further, whatever it holds
                value, expect = self.pair(), "bad_encoding"
            else:
                value, expect = self.json_record()
            values.append(value)
            records.append(Record(f"record {shown}", expect))
        if keyed:
            pairs = [(self.key(i)[0], v) for i, v in enumerate(values)]
            for i in self.rng.sample(range(count), 3):  # a repeated key: its later values are records too
                pairs.append((self.key(i)[0], self.pair()))
                records.append(Record(f"record {self.key(i)[1]} (repeat 1)", "duplicate_key"))
            text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
        else:
            text = json.dumps(values, indent=self.rng.choice([None, 1]))
        path = self.path(name)
        path.write_text(text, encoding="utf-8")
        self.add(path, records)

    def key(self, i: int) -> tuple[str, str]:
        """The key of record i in a keyed object, and how its location shows it (escaped where it would not print)."""
        if i % 7 == 0:
            return str(i), str(i)
        key, shown = KEYS[i % len(KEYS)]
        return key + str(i), shown + str(i)

    def broken_json(self, name: str, count: int, how: str) -> None:
        """A JSON file no parser can read: one reject for the file stands for all its records."""
        text = json.dumps([self.pair() for _ in range(count)])
        if how == "truncated":
            data, reason = text[: len(text) * 2 // 3].encode(), "malformed_json"
        elif how == "trailing_comma":
            data, reason = (text[:-1] + ",]").encode(), "malformed_json"
        elif how == "latin1":  # one more record, not UTF-8
            data, reason, count = text[:-1].encode() + b', {"query": "caf\xe9"}]', "bad_encoding", count + 1
        elif how == "utf16":
            data, reason = text.encode("utf-16"), "bad_encoding"
        elif how == "deep":
            data, reason, count = b"[" * 100_000 + b"]" * 100_000, "malformed_json", 1
        else:  # a scalar where a collection belongs
            data, reason, count = b'"just one string"', "not_a_collection", 1
        path = self.path(name)
        path.write_bytes(data)
        self.add(path, [Record("(file)", reason, covers=count)])

    def empty(self, name: str, data: bytes) -> None:
        path = self.path(name)
        path.write_bytes(data)
        self.add(path, [Record("(file)", "empty_file", covers=0)])

    # -- CSV and TSV --------------------------------------------------------------------------

    def cell(self, text: str, sep: str) -> str:
        """One field as a careful writer quotes it."""
        if self.rng.random() < 0.3 or any(c in text for c in (sep, '"', "\r", "\n")):
            return '"' + text.replace('"', '""') + '"'
        return text

    def csv(self, name: str, count: int, huge: tuple[int, ...] = (), unclosed: int = 0) -> None:
        sep = "\t" if name.endswith(".tsv") else ","
        extra = self.rng.random() < 0.5  # a header with category and id columns too
        header = sep.join(["query", "reference", *(["category", "id"] if extra else [])])
        ending = self.rng.choice(["\n", "\r\n"])
        parts: list[bytes] = [(header + ending).encode()]
        records: list[Record] = []
        line = 2
        huge_at = dict(zip(self.rng.sample(range(count), len(huge)), enumerate(huge)))
        for i in range(count):
            if i in huge_at:  # the first one quoted over 2,000 lines, the next on one line
                j, size = huge_at[i]
                big = self.cell(self.huge(size).replace(". ", ".\n", 2000), sep) if j % 2 == 0 else self.huge(size)
                text, expect = sep.join(["q", big, *(["c", "1"] if extra else [])]), "too_large"
            else:
                text, expect = self.csv_row(sep, extra)
            data = (text + ending).encode("utf-8", "surrogateescape")
            records.append(Record(f"line {line}", expect))
            parts.append(data)
            line += len(LINE_BREAKS.findall(text + ending))
            while self.rng.random() < 0.04:  # blank lines are no records
                parts.append(ending.encode())
                line += 1
        if unclosed:  # a quote that never closes: everything after it is one record, to the end of the file
            opened = f'q{self.serial}{sep}"never closed{ending}'
            after = [f"Write note {self.serial} again{sep}no quote here{ending}" for _ in range(unclosed)]
            end = line + len(LINE_BREAKS.findall(opened + "".join(after))) - 1
            records.append(Record(f"line {line}", "malformed_row", covers=1 + unclosed, detail=f"lines {line}-{end}"))
            parts += [opened.encode(), *(a.encode() for a in after)]
        path = self.path(name)
        path.write_bytes(b"".join(parts))
        self.add(path, records)

    def csv_row(self, sep: str, extra: bool) -> tuple[str, str | None]:
        """One CSV record (surrogate escapes stand for raw bytes) and what must become of it."""
        pair = self.pair()
        tail = [self.rng.choice(["poem", "\u202estory", "", "Screenplay"]), str(self.serial)] if extra else []
        kind = self.pick(
            valid=25, multiline=10, noisy=14, duplicate=6, bad_bytes=5, fewer=4, more=4, quote_after=4,
            quote_inside=3, all_empty=3, empty_query=3, empty_reference=3, unsupported=3, medium=1,
        )  # fmt: skip

        def row(query: str, reference: str, expect: str | None) -> tuple[str, str | None]:
            return sep.join(self.cell(text, sep) for text in (query, reference, *tail)), expect

        if kind == "valid":
            return row(**self.loads(pair), expect="loaded")
        if kind == "multiline":
            return row(**self.loads({**pair, "reference": pair["reference"].replace(".", ".\r\n", 1)}), expect="loaded")
        if kind == "noisy":
            return row(**self.loads({key: self.noisy(value) for key, value in pair.items()}), expect="loaded")
        if kind == "duplicate":
            again = self.duplicate()
            return row(**again, expect="duplicate") if again else row(**self.loads(pair), expect="loaded")
        if kind == "bad_bytes":
            junk = self.rng.choice(BAD_BYTES).decode("utf-8", "surrogateescape")
            return row(pair["query"], pair["reference"] + junk, "bad_encoding")
        if kind == "fewer":
            return self.cell(pair["query"], sep), "malformed_row"
        if kind == "more":
            return row(pair["query"], pair["reference"], None)[0] + sep + "one too many", "malformed_row"
        # text after a closing quote: csv's strict mode stops there (on one line, so reading resumes after it)
        if kind == "quote_after":
            return f'"{pair["query"]}"x{sep}{" ".join(pair["reference"].split())}', "malformed_row"
        if kind == "quote_inside":  # a quote inside an unquoted field is a plain character
            pair = self.loads({**pair, "query": pair["query"].replace(" ", ' "', 1)})
            return sep.join([pair["query"], *(self.cell(text, sep) for text in (pair["reference"], *tail))]), "loaded"
        if kind == "all_empty":
            return sep.join(self.rng.choice(["", '""']) for _ in range(2 + len(tail))), "empty_query"
        if kind == "empty_query":
            return row(self.rng.choice([" ", "\u200b", "\t"]), pair["reference"], "empty_query")
        if kind == "empty_reference":
            return row(pair["query"], self.rng.choice(["", " \n ", "\x00"]), "empty_reference")
        if kind == "unsupported":
            return row(**self.unsupported(), expect="unsupported_language")
        return row(**self.loads({**pair, "reference": pair["reference"] + " more" * 40_000}), expect="loaded")

    def broken_header(self, name: str, count: int) -> None:
        """A header whose quote never closes: the file has no columns, so one reject stands for it."""
        rows = [f"Write note {self.serial}-{i},It ends." for i in range(count)]
        text = '"query,reference\n' + "\n".join(rows) + "\n"
        path = self.path(name)
        path.write_text(text, encoding="utf-8")
        self.add(path, [Record("line 1", "malformed_row", covers=count, detail=f"lines 1-{count + 1}")])

    # -- Parquet and datasets folders -----------------------------------------------------------

    def table_rows(self, count: int, huge: tuple[int, ...] = ()) -> tuple[list[dict], list[str | None]]:
        """Rows of string columns (Arrow holds no other type in them) and what must become of each."""
        rows, expects = [], []
        for i in range(count):
            if huge and i == count // 2:
                rows.append({"query": "q", "reference": self.huge(huge[0]), "category": None})
                expects.append("too_large")
                continue
            pair = self.pair()
            kind = self.pick(valid=40, noisy=20, duplicate=8, null=6, empty=6, unsupported=4)
            row, expect = {**pair, "category": self.rng.choice([None, "poem", "\u202eRoleplay"])}, "loaded"
            if kind == "valid":
                self.loads(pair)
            elif kind == "noisy":
                row |= self.loads({key: self.noisy(pair[key]) for key in ("query", "reference")})
            elif kind == "duplicate":
                again = self.duplicate()
                row, expect = ({**row, **again}, "duplicate") if again else (self.loads(pair) and row, "loaded")
            elif kind in ("null", "empty"):
                role = self.rng.choice(["query", "reference"])
                row[role] = None if kind == "null" else self.rng.choice(["", "\u200b", "\x00 \x7f"])
                expect = f"{'missing' if kind == 'null' else 'empty'}_{role}"
            else:
                row, expect = {**self.unsupported(), "category": None}, "unsupported_language"
            rows.append(row)
            expects.append(expect)
        return rows, expects

    def parquet(self, name: str, count: int, huge: tuple[int, ...] = ()) -> None:
        rows, expects = self.table_rows(count, huge)
        path = self.path(name)
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=self.rng.choice([7, 64, 1000]))
        self.add(path, [Record(f"row {i}", e) for i, e in enumerate(expects)])

    def typed_parquet(self, name: str, count: int) -> None:
        """A column of the wrong type: numbers, lists, structs, bytes that are not UTF-8, NaN."""
        role, values = self.rng.choice(
            [
                ("query", pa.array([i * 7 for i in range(count)], pa.int64())),
                ("query", pa.array([float("nan")] * count)),
                ("reference", pa.array([["a", "b"]] * count)),
                ("query", pa.array([{"text": "a"}] * count)),
                ("reference", pa.array([b"caf\xe9 \xff"] * count, pa.binary())),
            ]
        )
        other = "reference" if role == "query" else "query"
        texts = [self.pair()[other] for _ in range(count)]
        path = self.path(name)
        pq.write_table(pa.table({role: values, other: texts}), path)
        self.add(path, [Record(f"row {i}", f"bad_{role}") for i in range(count)])

    def broken_parquet(self, name: str, count: int) -> None:
        path = self.path(name)
        pq.write_table(pa.Table.from_pylist([self.pair() for _ in range(count)]), path)
        data = path.read_bytes()
        path.write_bytes(self.rng.choice([data[: len(data) // 2], b"PAR1" + bytes(self.rng.randbytes(300))]))
        self.add(path, [Record("(file)", "unreadable_file", covers=count)])

    def shard(self, folder: Path, rows: list[dict], shards: int) -> None:
        """A split as `save_to_disk` writes it: Arrow stream shards and the state.json naming them."""
        folder.mkdir(parents=True)
        table = pa.Table.from_pylist(rows)
        names, step = [], -(-len(rows) // shards)
        for i in range(shards):
            names.append(f"data-{i:05d}-of-{shards:05d}.arrow")
            part = table.slice(i * step, step)
            with pa.OSFile(str(folder / names[-1]), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(part)
        (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names]}))

    def dataset(self, name: str, count: int, huge: tuple[int, ...] = ()) -> None:
        path = self.path(name)
        rows, expects = self.table_rows(count, huge)
        self.shard(path, rows, shards=self.rng.choice([1, 3]))
        self.add(path, [Record(f"row {i}", e) for i, e in enumerate(expects)])

    def dataset_dict(self, name: str, counts: dict[str, int], broken: str = "") -> None:
        """Splits read in the order dataset_dict.json names them; a `broken` split's shard is cut short."""
        path = self.path(name)
        records = []
        for split, count in counts.items():
            if split == broken:  # fresh pairs, none noted as loaded: the split is never read
                self.shard(path / split, [self.pair() for _ in range(count)], shards=1)
                shard = path / split / "data-00000-of-00001.arrow"
                shard.write_bytes(shard.read_bytes()[:-200])
                records.append(Record(f"({split})", "unreadable_file", covers=count))
            else:
                rows, expects = self.table_rows(count)
                self.shard(path / split, rows, shards=1)
                records += [Record(f"{split} row {i}", e) for i, e in enumerate(expects)]
        (path / "dataset_dict.json").write_text(json.dumps({"splits": list(counts)}))
        self.add(path, records)

    # -- plain text ---------------------------------------------------------------------------

    def text(self, name: str, data: bytes, expect: str) -> None:
        path = self.path(name)
        path.write_bytes(data)
        self.add(path, [Record("whole file", expect)])


def write_corpus(folder: Path, seed: int = 13, huge: bool = True) -> list[Written]:
    """Every reader's files, malformed in every way the fuzz knows, in the order they are to be read."""
    folder.mkdir(parents=True, exist_ok=True)
    g = Generator(folder, seed)

    def big(*mib: float) -> tuple[int, ...]:  # fields over the 1 MiB record limit (2-5 MB), when asked for
        return tuple(int(m * MIB) for m in mib) if huge else ()

    g.jsonl("mixed.jsonl", 420, huge=big(2.2))
    g.jsonl("more.ndjson", 300)
    g.jsonl("crlf.jsonl", 200, huge=big(4.5, 1.0001))
    g.utf16("utf16.jsonl", 6)
    g.empty("empty.jsonl", b"")
    g.empty("blank.jsonl", b"\n  \n\t\r\n")
    g.json_file("list.json", 160, keyed=False, huge=big(3))
    g.json_file("keyed.json", 120, keyed=True)
    for how in ("truncated", "trailing_comma", "latin1", "utf16", "deep", "scalar"):
        g.broken_json(f"broken-{how}.json", 12, how)
    g.empty("empty-list.json", b"[]")
    g.empty("empty-object.json", b"{ }")
    g.csv("mixed.csv", 260, huge=big(2.5, 2))
    g.csv("unclosed.csv", 80, unclosed=9)
    g.csv("mixed.tsv", 180, unclosed=4)
    g.utf16("utf16.csv", 5, header="query,reference\n")
    g.broken_header("header.csv", 6)
    g.empty("header-only.csv", b"query,reference\r\n")
    g.empty("empty.tsv", b"")
    g.parquet("mixed.parquet", 150, huge=big(2))
    for i in range(3):
        g.typed_parquet(f"typed-{i}.parquet", 8)
    g.broken_parquet("broken.parquet", 20)
    g.empty("empty.parquet", _empty_parquet())
    g.dataset("dataset", 90, huge=big(2))
    g.dataset_dict("dataset_dict", {"train": 70, "test": 30, "validation": 15}, broken="validation")
    g.text("story.txt", b"The tide came in.\n\nShe waited.", "no_query")
    g.text("noisy.md", g.noisy("# Notes\n\nThe wind rose.\u202e\x00\x85").encode(), "no_query")
    g.text("latin1.txt", b"caf\xe9 au lait", "bad_encoding")
    g.text("utf16.txt", "A text in UTF-16.".encode("utf-16"), "bad_encoding")
    g.text("empty.txt", b"", "empty_reference")
    g.text("controls.md", "\x00\x1b\x7f\u009b\u202e\u2066".encode(), "empty_reference")
    g.text("cyrillic.txt", "Маяк стоял на скале.".encode(), "unsupported_language")
    if huge:
        g.text("huge.txt", g.huge(int(2.5 * MIB)).encode(), "too_large")
    return g.written


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _empty_parquet() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"query": pa.array([], pa.string()), "reference": pa.array([], pa.string())}), sink)
    return sink.getvalue().to_pybytes()
