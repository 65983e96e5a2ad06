"""Hand-written code against the kept libraries that could replace it, side by side on the same input.

    .venv/bin/python -m bench.libraries [--quick]

MinHash/LSH (tasks/dedup.py) against datasketch and rensa; the readers (tasks/readers.py) against
polars and pyarrow; the report's SVG charts (tasks/svg.py) against altair + vl-convert and
matplotlib. Each candidate runs in a fresh process, imports done before the clock starts (the SVG
section times them apart). Peak memory is the growth of the resident high-water mark (VmHWM, reset
through /proc/self/clear_refs), so native allocations count too, which tracemalloc would miss.
Real inputs are read where they lie (../shared/data); larger ones are synthetic, in a temp folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from bench import SHARED_DATA

PRIME = (1 << 31) - 1  # the hand-written MinHash's modulus


def real_texts() -> list[str]:
    """Every prompt and answer of the shared data, in a fixed order (404 texts, English and Chinese)."""
    fields = {"hellobench_heuristic_text_generation": "instruction", "longbench_write": "prompt"}
    fields["hellobench_heuristic_text_generation_claude35_responses"] = "response"
    texts = [json.loads(line)[f] for name, f in fields.items() for line in (SHARED_DATA / f"{name}.jsonl").open()]
    eq = json.loads((SHARED_DATA / "eqbench_creative_writing_prompts.json").read_text(encoding="utf-8")).values()
    return texts + [r[f] for r in eq for f in ("writing_prompt", "reference_output")]


def synthetic_texts(count: int, words: int, seed: int = 7) -> list[str]:
    """Random texts over the real texts' vocabulary; a tenth are near copies, a twentieth exact ones."""
    rng = random.Random(seed)
    vocab = sorted({w for t in real_texts() for w in re.findall(r"[A-Za-z]+", t)})
    texts: list[str] = []
    for _ in range(count):
        roll, copy = rng.random(), (rng.choice(texts) if texts else "").split()
        for i in rng.sample(range(len(copy)), max(1, len(copy) // 40)) if roll < 0.15 and copy else []:
            copy[i] = rng.choice(vocab) if roll >= 0.05 else copy[i].upper()  # near copy, or exact (case aside)
        texts.append(" ".join(copy) if texts and roll < 0.15 else " ".join(rng.choices(vocab, k=words)))
    return texts


def write_tables(folder: Path, name: str, records: list[dict]) -> dict[str, Path]:
    """The same records as JSONL, CSV and Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {kind: folder / f"{name}.{kind}" for kind in ("jsonl", "csv", "parquet")}
    with paths["jsonl"].open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with paths["csv"].open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([list(records[0]), *(r.values() for r in records)])
    pq.write_table(pa.Table.from_pylist(records), paths["parquet"])
    return paths


def _status_mb(field: str) -> float:
    return int(next(x for x in Path("/proc/self/status").open() if x.startswith(field)).split()[1]) / 1024


def measure(work, repeat: int = 1) -> dict:
    """Best seconds of `repeat` calls, and the peak memory growth (MB) of the first; its result goes along."""
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the present size
    before = _status_mb("VmRSS")
    times, results, peaks = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        results.append(work())
        times.append(time.perf_counter() - start)
        peaks.append(_status_mb("VmHWM") - before)
    return {"seconds": min(times), "peak_mb": max(0.0, peaks[0]), "result": results[0]}


class HandMinHasher:
    """reer's hand-written MinHash before this comparison: blake2b, then numpy universal hashing."""

    def __init__(self, permutations: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, PRIME, size=permutations, dtype=np.uint64)
        self.b = rng.integers(0, PRIME, size=permutations, dtype=np.uint64)

    def signature(self, items: set[str]) -> np.ndarray:
        hashes = [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") % PRIME for s in items]
        base = np.array(hashes, dtype=np.uint64)
        return ((np.outer(base, self.a) + self.b) % PRIME).min(axis=0)


def proposer(backend: str, permutations: int = 128, bands: int = 32):
    """(index, shingle set) -> the earlier indices sharing an LSH band; adds the set to the index."""
    if backend == "hand":
        hasher, rows, buckets = HandMinHasher(permutations), permutations // bands, {}

        def propose(i, items):
            sig = hasher.signature(items)
            keys = [(b, sig[b * rows : (b + 1) * rows].tobytes()) for b in range(bands)]
            found = {j for k in keys for j in buckets.get(k, ())}
            for k in keys:
                buckets.setdefault(k, []).append(i)
            return found

        return propose
    if backend == "datasketch":
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(num_perm=permutations, params=(bands, permutations // bands))
        make = lambda items: MinHash.bulk([[s.encode() for s in items]], num_perm=permutations, seed=1)[0]  # noqa: E731
    else:
        from rensa import RMinHash, RMinHashLSH

        lsh = RMinHashLSH(0.8, permutations, bands)
        make = lambda items: RMinHash.from_token_sets([list(items)], permutations, 1)[0]  # noqa: E731

    def propose(i, items):
        m = make(items)
        found = set(lsh.query(m))
        lsh.insert(i, m)
        return found

    return propose


def dedup_child(backend: str, texts: list[str]) -> list:
    """find_duplicates' loop (as in tasks/dedup.py) with the candidates of `backend`."""
    from reer.tasks.dedup import jaccard, normalized, shingles

    propose, sets, firsts, out = proposer(backend), [], {}, []
    for i, text in enumerate(texts):
        key = normalized(text)
        sets.append(shingles(text, 3))
        if not key:
            out.append([0.0, None])
            continue
        found = propose(i, sets[-1])
        if key in firsts:
            out.append([1.0, firsts[key]])
            continue
        firsts[key] = i
        best = max(((jaccard(sets[-1], sets[j]), -j) for j in found), default=(0.0, None))
        out.append([best[0], None if best[1] is None else -best[1]])
    return out


def arrow_csv(path: Path, hybrid: bool = True):
    """pyarrow parses (strings only); as a hybrid's fast path Python adds the line of each row and its payload."""
    import pyarrow as pa
    import pyarrow.csv as pc

    from reer.tasks.readers import Raw

    types = pc.ConvertOptions(column_types=dict.fromkeys(next(csv.reader(path.open(newline=""))), pa.string()))
    options = pc.ParseOptions(newlines_in_values=True, ignore_empty_lines=not hybrid)
    table, line = pc.read_csv(path, parse_options=options, convert_options=types), 2
    for batch in table.to_batches():
        for record in batch.to_pylist():
            if hybrid:
                payload = ",".join(record.values())
                record = Raw(f"line {line}", record, payload)
                line += 1 + len(re.findall(r"\r\n|\r|\n", payload))
            yield record


def read_child(backend: str, path: Path) -> int:
    """Records read from one file, as Python dicts (reer maps each record in Python)."""
    import polars as pl
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from reer.tasks.readers import Raw, read_raw

    kind = path.suffix[1:]
    if backend == "hand":
        return sum(isinstance(r, Raw) for r in read_raw(path))
    if backend == "hybrid":
        return sum(1 for _ in arrow_csv(path))
    if backend == "polars":
        read = {"jsonl": pl.read_ndjson, "csv": lambda p: pl.read_csv(p, infer_schema=False)}.get(kind, pl.read_parquet)
        return len(read(path).to_dicts())
    if kind == "jsonl":
        return len(pj.read_json(path).to_pylist())
    if kind == "csv":
        return sum(1 for _ in arrow_csv(path, hybrid=False))
    return sum(len(b.to_pylist()) for b in pq.ParquetFile(path).iter_batches(batch_size=1024))


def chart_data() -> dict:
    rng = random.Random(3)
    lines = {f"item-{n}": [(s, 2.5 - 0.02 * s * rng.random() - 0.1 * n) for s in range(40)] for n in range(6)}
    bars = [(str(i), rng.random(), f"{i}/{12}") for i in range(12)]
    return {"lines": lines, "bars": bars, "values": [rng.gauss(0.1, 0.05) for _ in range(300)]}


def hand_charts(d: dict) -> list[str]:
    from reer.tasks.svg import bar_chart, histogram, line_chart

    line = line_chart(d["lines"], "search step", "best score", "score per step", step=True)
    bars = bar_chart(d["bars"], "segment", "accepted", "acceptance", percent=True)
    return [line, bars, histogram(d["values"], "relative improvement", "improvement")]


def altair_charts(d: dict) -> list[str]:
    """The same three charts in Vega-Lite, drawn to SVG by vl-convert (offline, its own JS engine)."""
    import altair as alt
    import vl_convert as vlc

    from reer.tasks.svg import PALETTE

    pct, tip = alt.Axis(format="%"), alt.Tooltip
    rows = [{"step": x, "score": y, "item": n} for n, pts in d["lines"].items() for x, y in pts]
    line = alt.Chart(alt.Data(values=rows)).mark_line(point=True, interpolate="step-after")
    line = line.encode(
        x=alt.X("step:Q", title="search step"),
        y=alt.Y("score:Q", title="best score"),
        color=alt.Color("item:N", scale=alt.Scale(range=list(PALETTE))),
        tooltip=[tip("item:N"), tip("score:Q")],
    )
    bar = alt.Chart(alt.Data(values=[{"segment": s, "rate": v} for s, v, _ in d["bars"]])).mark_bar(color=PALETTE[0])
    bar = bar.encode(x=alt.X("segment:O"), y=alt.Y("rate:Q", axis=pct), tooltip=[tip("rate:Q")])
    hist = alt.Chart(alt.Data(values=[{"v": v} for v in d["values"]])).mark_bar(color=PALETTE[2])
    hist = hist.encode(x=alt.X("v:Q", bin=alt.Bin(maxbins=12), axis=pct), y="count()")
    return [vlc.vegalite_to_svg(c.properties(width=560, height=250).to_dict()) for c in (line, bar, hist)]


def matplotlib_charts(d: dict) -> list[str]:
    """The same three charts with matplotlib's SVG backend, text kept as text (svg.fonttype none)."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    from reer.tasks.svg import PALETTE

    out = []
    with matplotlib.rc_context({"svg.fonttype": "none", "axes.prop_cycle": matplotlib.cycler(color=PALETTE)}):
        axes = [Figure(figsize=(6.4, 3.2)).subplots() for _ in range(3)]
        for name, pts in d["lines"].items():
            axes[0].step(*zip(*pts), where="post", marker="o", markersize=3, label=name)
        axes[0].set(xlabel="search step", ylabel="best score")
        axes[0].legend(fontsize=7)
        axes[1].bar([s for s, _, _ in d["bars"]], [v for _, v, _ in d["bars"]], color=PALETTE[0])
        axes[1].yaxis.set_major_formatter(PercentFormatter(1.0))
        axes[2].hist(d["values"], bins=12, color=PALETTE[2])
        axes[2].axvline(sum(d["values"]) / len(d["values"]), color="k", linestyle="--")
        axes[2].xaxis.set_major_formatter(PercentFormatter(1.0))
        for ax in axes:
            ax.figure.savefig(buffer := io.StringIO(), format="svg")
            out.append(buffer.getvalue())
    return out


SVG_IMPORTS = {"hand": ["reer.tasks.svg"], "altair": ["altair", "vl_convert"], "matplotlib": ["matplotlib.figure"]}


def svg_child(backend: str) -> dict:
    """Import time, first render (warm-up included) and the best of five later renders of three charts."""
    start = time.perf_counter()
    for module in SVG_IMPORTS[backend]:
        __import__(module)
    imported = time.perf_counter() - start
    render = {"hand": hand_charts, "altair": altair_charts, "matplotlib": matplotlib_charts}[backend]
    data = chart_data()
    first = measure(lambda: render(data))
    later = min(measure(lambda: render(data))["seconds"] for _ in range(5))
    svgs, counts = first["result"], {}
    for tag in ("title", "text", "script"):  # hover values, text nodes, scripts
        counts[tag] = sum(s.count(f"<{tag}") for s in svgs)
    counts["kb"] = sum(len(s.encode()) for s in svgs) / 1024
    return {**first, **counts, "result": None, "seconds": later, "import_s": imported, "first_s": first["seconds"]}


PRELOAD = {"dedup": ["datasketch", "rensa"], "read": ["polars", "pyarrow.json", "pyarrow.csv", "pyarrow.parquet"]}


def child(args: list[str]) -> None:
    kind, backend, arg = args
    if kind == "svg":
        print(json.dumps(svg_child(backend)))
        return
    for module in ["reer.tasks.dedup", "reer.tasks.readers", *PRELOAD[kind]]:
        __import__(module)
    if kind == "dedup":
        texts = json.loads(Path(arg).read_text(encoding="utf-8"))
        found = measure(lambda: dedup_child(backend, texts), repeat=3 if len(texts) < 1000 else 1)
    else:
        try:
            found = measure(lambda: read_child(backend, Path(arg)), repeat=3)
        except Exception as error:  # a library that fails the whole file is a finding, not a crash
            found = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:90]}"}
    print(json.dumps(found))


def run(kind: str, backend: str, arg: str = "-") -> dict:
    cmd = [sys.executable, "-m", "bench.libraries", "--child", kind, backend, arg]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:100]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(name: str, got: dict, base: dict, extra: str = "") -> str:
    if "error" in got:
        return f"  {name:<12} fails: {got['error']}"
    t, m = got["seconds"], got["peak_mb"]
    floor = "" if base["peak_mb"] >= 1 or got is base else ">"  # hand under 1 MB: ratio to 1 MB, a lower bound
    mem = f"{m:8.1f} MB {floor:>2}{1.0 if got is base else m / max(base['peak_mb'], 1.0):6.2f}x"
    return f"  {name:<12} {t:8.3f} s {t / base['seconds']:6.2f}x  {mem}  {extra}"


def dedup_section(folder: Path, sizes: list[tuple[str, list[str]]]) -> None:
    print("\n== dedup: find_duplicates (shingles, MinHash 128 x LSH 32 bands, exact Jaccard); ratio to hand")
    for label, texts in sizes:
        path = folder / f"{label}.json"
        path.write_text(json.dumps(texts), encoding="utf-8")
        print(f" {label}: {len(texts):,} texts, {sum(len(t.split()) for t in texts) / len(texts):.0f} words on average")
        base = run("dedup", "hand", str(path))
        for name in ("hand", "datasketch", "rensa"):
            got = base if name == "hand" else run("dedup", name, str(path))
            differ = [max(a[0], b[0]) for a, b in zip(got.get("result", []), base["result"]) if a != b]
            note = f"differs from hand on {len(differ)}" + (f" (all below {max(differ):.2f})" if differ else "")
            print(row(name, got, base, f"{note}; >= 0.8: {sum(s >= 0.8 for s, _ in got.get('result', []))}"))


def bad_input_probe(folder: Path) -> None:
    """What each library does with one malformed line among good ones (reer must reject only that line)."""
    good = json.dumps({"query": "q", "reference": "r"})
    (folder / "bad.jsonl").write_text("\n".join([good] * 5 + ['{"query": "q",'] + [good] * 5) + "\n")
    (folder / "bad.csv").write_text("query,reference\n" + "q,r\n" * 5 + "only one field\n" + "q,r\n" * 5)
    print(" one bad record among 10 good (line 7 of each file):")
    for name in ("bad.jsonl", "bad.csv"):
        for backend in ("hand", "polars", "pyarrow"):
            got = run("read", backend, str(folder / name))
            said = got.get("error") or f"{got['result']} records read"
            print(f"   {name:<10} {backend:<8} {said}")


def readers_section(folder: Path, records: int) -> None:
    print("\n== readers: whole file to Python records; ratio to hand (tasks/readers.read_raw)")
    real = [
        json.loads(line) for line in (SHARED_DATA / "hellobench_heuristic_text_generation.jsonl").open(encoding="utf-8")
    ]
    real = [{k: v if isinstance(v, str | int) else json.dumps(v) for k, v in r.items()} for r in real]
    texts = synthetic_texts(records, 600)
    synthetic = [{"query": t[:160], "reference": t} for t in texts]
    for label, rows in (("real (hellobench, 123 records)", real), (f"synthetic ({records:,} x 600 words)", synthetic)):
        paths = write_tables(folder, label.split()[0], rows)
        for kind, path in paths.items():
            print(f" {label}, {kind}: {path.stat().st_size / 2**20:.1f} MB")
            base = run("read", "hand", str(path))
            for name in ("hand", "polars", "pyarrow", "hybrid")[: 4 if kind == "csv" else 3]:
                got = base if name == "hand" else run("read", name, str(path))
                print(row(name, got, base, f"{got.get('result', '-')} records"))
    bad_input_probe(folder)


def installed_mb(*dists: str) -> float:
    return sum(f.size or 0 for name in dists for f in metadata.distribution(name).files or []) / 2**20


def svg_section() -> None:
    print("\n== svg: a step line chart (6 series x 40 steps), a bar chart (12) and a histogram (300 values)")
    mpl = installed_mb("matplotlib", "contourpy", "kiwisolver", "fonttools", "pillow", "cycler")
    sizes = {"hand": 0.0, "altair": installed_mb("vl-convert-python"), "matplotlib": mpl}  # altair: already there
    base = run("svg", "hand")
    for name in ("hand", "altair", "matplotlib"):
        got = base if name == "hand" else run("svg", name)
        print(row(name, got, base, "(render, best of 5; peak on the first render)"))
        print(
            ""
            if "error" in got
            else f"  {'':<12} import {got['import_s']:.3f} s, first render {got['first_s']:.3f} s, "
            f"{got['kb']:.0f} KB of SVG ({got['kb'] / base['kb']:.1f}x), {got['text']} <text>, "
            f"{got['title']} <title> (hover values), {got['script']} <script>, adds {sizes[name]:.0f} MB installed"
        )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    scale = 5 if "--quick" in sys.argv else 1  # smaller synthetic inputs
    with tempfile.TemporaryDirectory(prefix="reer-bench-") as tmp:
        folder = Path(tmp)
        dedup_section(folder, [("real", real_texts()), ("synthetic", synthetic_texts(10_000 // scale, 300))])
        readers_section(folder, 20_000 // scale)
        svg_section()


if __name__ == "__main__":
    main()
