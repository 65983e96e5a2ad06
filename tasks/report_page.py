"""The report's page: a run's ReportData as one HTML file with inline CSS and SVG plots."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

from reer.tasks.svg import PALETTE, bar_chart, histogram, line_chart

if TYPE_CHECKING:
    from reer.tasks.report import ReportData

MAX_LINES = 24  # items drawn in the score-per-step plot; a bigger run shows the ones that moved most


def num(value: Any, digits: int = 4) -> str:
    """A figure for a person: '-' when missing, floats rounded."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if isinstance(value, datetime) else num(value)


def score_plot(data: ReportData) -> str:
    """Best score after every search step, one line per item; filled dots: steps that accepted a rewrite."""
    by_item: dict[str, list[tuple[float, float]]] = {}
    accepted: dict[str, set[float]] = {}
    for r in data.steps:
        by_item.setdefault(r["trajectory_id"], []).append((r["step"], r["best_score"]))
        if r["accepted"] and r["step"] > 0:
            accepted.setdefault(r["trajectory_id"], set()).add(r["step"])
    moved = sorted(by_item, key=lambda t: -(by_item[t][0][1] - min(s for _, s in by_item[t])))[:MAX_LINES]
    series = {t[:12]: by_item[t] for t in moved}
    marked = {t[:12]: accepted.get(t, set()) for t in moved}
    return line_chart(
        series,
        "search step (0 = initial thinking)",
        "best score (lower is better)",
        "score per search step for each item",
        marked=marked,
        step=True,
    )


def improvement_plot(data: ReportData) -> str:
    """How much each finished item's score fell, relative to its initial score."""
    values = [
        r["relative_improvement"]
        for r in data.items
        if r["status"] == "completed" and r["relative_improvement"] is not None
    ]
    return histogram(values, "relative improvement (initial - final) / initial", "distribution of relative improvement")


def acceptance_plot(data: ReportData) -> str:
    """Share of search steps at each segment position that accepted a rewrite."""
    bars = [
        (str(r["segment_index"]), r["acceptance_rate"] or 0.0, f"{r['accepted_steps']}/{r['steps']}")
        for r in data.segments
        if r["segment_index"] is not None
    ]
    return bar_chart(
        bars,
        "segment position (0 = first segment)",
        "steps that accepted a rewrite",
        "acceptance rate per segment position",
        percent=True,
    )


def throughput_plot(data: ReportData) -> str:
    """Items finished (running total) and revisions scored per minute since the run started."""
    finished = [(r["minute"] + 1, r["finished_total"]) for r in data.throughput]
    scored = [(r["minute"] + 1, r["scored"]) for r in data.throughput]
    if finished:
        finished = [(0, 0)] + finished
        scored = [(0, 0)] + scored
    return line_chart(
        {"items finished (total)": finished, "revisions scored in that minute": scored},
        "minutes since the run started",
        "count",
        "throughput over time",
        y_zero=True,
    )


def in_flight_plot(data: ReportData) -> str:
    """Mean sequences each model had in flight, over the search's wall time."""
    timeline = data.header.get("in_flight") or []
    models = [k for k in (timeline[0] if timeline else {}) if k != "seconds"]
    series = {
        f"{m} ({pct(data.header['busy'].get(m), 0)} busy)": [(r["seconds"], r[m]) for r in timeline] for m in models
    }
    return line_chart(
        series,
        "seconds since the search started",
        "sequences in flight",
        "sequences in flight",
        integer_x=False,
        y_zero=True,
    )


CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff; --accent:#0072B2;
        --good:#009E73; --bad:#D55E00; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink);
       background:var(--bg); }
header { background:#102a43; color:#f0f4f8; padding:28px 40px 22px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header .sub { color:#bcccdc; font-size:14px; }
header code { color:#fff; }
main { max-width:1280px; margin:0 auto; padding:24px 40px 48px; }
h2 { font-size:18px; margin:32px 0 12px; font-weight:600; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(190px,1fr)); gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:21px; font-weight:600; margin-top:2px; font-variant-numeric:tabular-nums; white-space:nowrap; }
.card .v small { font-size:13px; color:var(--muted); font-weight:400; }
.plots { display:grid; grid-template-columns:repeat(auto-fit,minmax(520px,1fr)); gap:16px; }
figure { margin:0; background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px 10px; }
figure h3 { margin:0 0 2px; font-size:15px; font-weight:600; }
figcaption { color:var(--muted); font-size:13px; margin-bottom:6px; }
figure svg { width:100%; height:auto; display:block; }
.legend { display:flex; flex-wrap:wrap; gap:4px 14px; font-size:12px; color:var(--muted); margin-top:4px; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
table { border-collapse:collapse; width:100%; background:var(--card); border:1px solid var(--line);
        border-radius:8px; overflow:hidden; font-size:13.5px; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f0f4f8; font-weight:600; font-size:12.5px; color:var(--muted); }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr:last-child td { border-bottom:none; }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; background:#e4e7eb; }
.pill.completed, .pill.yes { background:#d9f2e9; color:#05603a; }
.pill.rejected, .pill.no { background:#fbe3d6; color:#8a2c0d; }
.bar { background:#e4e7eb; border-radius:3px; height:8px; width:120px; display:inline-block; vertical-align:middle; }
.bar span { display:block; height:8px; border-radius:3px; background:var(--good); }
.two { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:16px; }
.muted { color:var(--muted); }
a { color:var(--accent); }
ul.links { margin:0; padding-left:18px; }
dl.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:0; font-size:13.5px; }
dl.meta dt { color:var(--muted); } dl.meta dd { margin:0; font-family:ui-monospace,monospace; font-size:12.5px; }
footer { color:var(--muted); font-size:12px; margin-top:36px; }
"""


def card(key: str, value: str, small: str = "") -> str:
    extra = f" <small>{escape(small)}</small>" if small else ""
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{escape(value)}{extra}</div></div>'


def figure(ident: str, title: str, caption: str, chart: str, legend: list[str] | None = None) -> str:
    keys = ""
    if legend:
        keys = (
            '<div class="legend">'
            + "".join(
                f'<span><i style="background:{PALETTE[n % len(PALETTE)]}"></i>{escape(name)}</span>'
                for n, name in enumerate(legend)
            )
            + "</div>"
        )
    return (
        f'<figure id="{ident}"><h3>{escape(title)}</h3><figcaption>{escape(caption)}</figcaption>{chart}{keys}</figure>'
    )


def table(columns: list[tuple[str, str]], rows: list[list[str]], empty_note: str) -> str:
    """An HTML table; cells are pre-escaped HTML; column kind 'n' right-aligns numbers."""
    if not rows:
        return f'<p class="muted">{escape(empty_note)}</p>'
    head = "".join(f'<th class="{kind}">{escape(name)}</th>' for name, kind in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{kind}">{cell}</td>' for (_, kind), cell in zip(columns, row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pill(text: str | None) -> str:
    return f'<span class="pill {escape(text or "")}">{escape(text or "-")}</span>'


def header_cards(data: ReportData) -> str:
    h, f = data.header, data.figures
    drop = f.get("mean_score_drop")
    initial = f.get("mean_initial_score")
    relative = f" ({100 * drop / initial:.1f}%)" if drop is not None and initial else ""
    cards = [
        card("items", num(f.get("items")), f"{f.get('completed') or 0} completed"),
        card(
            "rejected",
            num((f.get("rejected_in_search") or 0) + (f.get("rejected_inputs") or 0)),
            f"{f.get('rejected_in_search') or 0} in search, {f.get('rejected_inputs') or 0} inputs",
        ),
        card("mean score", f"{num(initial, 3)} → {num(f.get('mean_final_score'), 3)}"),
        card("mean score drop", num(drop, 4), relative.strip(" ()")),
        card("accepted edits", num(f.get("accepted_edits") or 0), f"of {f.get('candidates') or 0} candidates"),
        card("wall time", num(h.get("wall_seconds"), 1), "s"),
        card("items per hour", num(h.get("items_per_hour"), 1)),
        card("generated tokens/s", num(h.get("generated_tokens_per_second"), 1)),
        card("scored tokens/s", num(h.get("scored_tokens_per_second"), 1)),
        *(card(f"{model} busy", pct(share, 0), "of the search") for model, share in (h.get("busy") or {}).items()),
        *control_cards(data),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


CONTROL_NAMES = {
    "no_thinking": ("thinking gain", "no thinking (an empty think block)"),
    "other_thinking": ("specificity", "another item's final thinking"),
}


def signed(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def control_cards(data: ReportData) -> list[str]:
    """Per control: z*'s mean float32 gain over it, and how many items it beats by the margin."""
    cards = []
    for f in data.controls:
        title, _ = CONTROL_NAMES[f["control"]]
        small = f"z* better in {f['beats']}/{f['n']}" if f["n"] else "no control"
        cards.append(card(title, signed(f["mean_gain"]), small))
    return cards


def controls_table(data: ReportData) -> str:
    rows = [
        [
            escape(CONTROL_NAMES[f["control"]][0]),
            escape(CONTROL_NAMES[f["control"]][1]),
            f"{f['n']} / {f['completed']}",
            signed(f["mean_gain"]),
            signed(f["median_gain"]),
            f"{signed(f['min_gain'])} … {signed(f['max_gain'])}" if f["n"] else "-",
            f"{f['beats']} / {f['n']}",
            pct(f["share"]),
        ]
        for f in data.controls
    ]
    return table(
        [
            ("figure", ""),
            ("z* against", ""),
            ("items with it", "n"),
            ("mean gain", "n"),
            ("median", "n"),
            ("range", "n"),
            (f"z* better by >= {data.margin:g}", "n"),
            ("share", "n"),
        ],
        rows,
        "No completed trajectory.",
    )


def rejects_table(data: ReportData) -> str:
    rows = [
        [escape(r["stage"]), escape(r["reason"]), f"{r['n']}", escape((r["example"] or "")[:160])] for r in data.rejects
    ]
    return table(
        [("stage", ""), ("reason", ""), ("count", "n"), ("example message", "muted")], rows, "Nothing was rejected."
    )


def checks_table(data: ReportData) -> str:
    rows = []
    for r in data.checks:
        rate = r["pass_rate"] or 0.0
        rows.append(
            [
                escape(r["suite"]),
                escape(r["check_name"]),
                "-" if r["threshold"] is None else f"{r['threshold']:g}",
                f"{r['passed']} / {r['checked']}",
                f'<span class="bar"><span style="width:{100 * rate:.0f}%"></span></span> {pct(rate)}',
            ]
        )
    return table(
        [("suite", ""), ("check", ""), ("bound", "n"), ("passed", "n"), ("pass rate", "n")],
        rows,
        "This run has no validation yet (reer validate RUN).",
    )


def items_table(data: ReportData) -> str:
    rows = []
    for r in data.items:
        verdict = "" if r["passed"] is None else pill("yes" if r["passed"] else "no")
        rows.append(
            [
                f"<code>{escape(r['trajectory_id'][:12])}</code>",
                pill(r["status"]),
                escape(r["reason"] or ""),
                num(r["initial_score"]),
                num(r["final_score"]),
                pct(r["relative_improvement"]),
                signed(r.get("thinking_gain")),
                signed(r.get("specificity")),
                num(r["steps"]),
                num(r["accepted_edits"]),
                verdict,
                escape(r["query"] or ""),
            ]
        )
    return table(
        [
            ("item", ""),
            ("status", ""),
            ("reason", ""),
            ("initial", "n"),
            ("final", "n"),
            ("improvement", "n"),
            ("gain over no thinking", "n"),
            ("specificity", "n"),
            ("steps", "n"),
            ("accepted", "n"),
            ("passed checks", ""),
            ("query", "muted"),
        ],
        rows,
        "This run covered no item.",
    )


def links_list(data: ReportData) -> str:
    if not data.links:
        return '<p class="muted">No exported files next to this report yet.</p>'
    return (
        '<ul class="links">'
        + "".join(
            f'<li><a href="{escape(href, quote=True)}">{escape(title)}</a> <span class="muted">{escape(href)}</span></li>'
            for title, href in data.links.items()
        )
        + "</ul>"
    )


def meta_list(data: ReportData) -> str:
    h = data.header
    pairs = [
        ("run", h["run_id"]),
        ("status", f"{h.get('status') or '-'} at {when(h.get('status_at'))}"),
        ("started", when(h.get("started_at"))),
        ("generator", h.get("generator_model")),
        ("scorer", h.get("scorer_model")),
        ("backend / dtype", f"{h.get('backend')} / {h.get('dtype')}"),
        ("config hash", h.get("config_hash")),
        ("prompt version", h.get("prompt_version")),
        ("code version", h.get("code_version")),
        ("Prefect flow run", h.get("flow_run_id")),
    ]
    return '<dl class="meta">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(num(v))}</dd>" for k, v in pairs) + "</dl>"


def render(data: ReportData) -> str:
    """The report as one HTML document."""
    h = data.header
    moved = len({r["trajectory_id"] for r in data.steps})
    shown = f" (the {MAX_LINES} that moved most of {moved})" if moved > MAX_LINES else ""
    plots = "".join(
        [
            figure(
                "plot-score-per-step",
                "Score per search step",
                f"Best score after each step, one line per item{shown}; filled dots mark steps that accepted a rewrite.",
                score_plot(data),
            ),
            figure(
                "plot-relative-improvement",
                "Relative improvement",
                "How far each completed item's score fell from its initial thinking, as a share of the initial score.",
                improvement_plot(data),
            ),
            figure(
                "plot-acceptance-by-segment",
                "Acceptance rate per segment position",
                "Share of search steps at each segment position where a rewrite lowered the score (accepted/tried).",
                acceptance_plot(data),
            ),
            figure(
                "plot-throughput",
                "Throughput over time",
                "Items finished so far and revisions scored per minute of the run.",
                throughput_plot(data),
                legend=["items finished (total)", "revisions scored in that minute"],
            ),
            figure(
                "plot-in-flight",
                "Models kept busy",
                "Sequences each model had in flight (mean per interval): a model near zero waits for the other.",
                in_flight_plot(data),
                legend=[f"{m} ({pct(s, 0)} busy)" for m, s in (data.header.get("busy") or {}).items()],
            ),
        ]
    )
    title = f"reer run {data.run_id}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<header><h1>{escape(title)}</h1>
<div class="sub">{escape(h.get("flow_name") or "")} · {escape(h.get("status") or "unknown")} ·
started {escape(when(h.get("started_at")))} · generator <code>{escape(h.get("generator_model") or "-")}</code> ·
scorer <code>{escape(h.get("scorer_model") or "-")}</code> · config <code>{escape(h.get("config_hash") or "-")}</code></div>
</header>
<main>
<section id="figures">{header_cards(data)}</section>
<h2>Search</h2>
<section class="plots">{plots}</section>
<section id="controls"><h2>Controls</h2>
<p class="muted">Scored in float32 by the scorer's model, with the answer unchanged: gain = the answer's score after the control
minus its score after the searched thinking z*; positive means z* explains the answer better. Another item's thinking:
sorted by trajectory id, each item reads the next one's.</p>{controls_table(data)}</section>
<section id="rejects"><h2>Rejects by reason</h2>{rejects_table(data)}</section>
<section id="checks"><h2>Check pass rates</h2>{checks_table(data)}</section>
<section id="items"><h2>Items</h2>{items_table(data)}</section>
<div class="two">
<section id="links"><h2>Files</h2>{links_list(data)}</section>
<section id="run"><h2>Run</h2>{meta_list(data)}</section>
</div>
<footer>Written by reer from the store's tables; rebuild it with <code>reer report {escape(data.run_id)}</code>.</footer>
</main></body></html>
"""
