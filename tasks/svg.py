"""Small, dependency-free SVG charts for the run report: lines, bars and a histogram.

Every chart is a self-contained <svg> string (no scripts, no fonts to fetch) that scales with
its container; hovering a mark shows its value through an SVG <title>.
"""

# Hand-written over altair+vl-convert / matplotlib: far faster, nothing to install or import, keeps hover values.
from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Okabe-Ito, reordered: distinguishable for colour-blind readers, calm on white.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"

WIDTH, HEIGHT = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 52


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi], about `count` of them."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1), hi + (abs(hi) * 0.1 or 1)
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 10))
    return ticks


def fmt_tick(value: float, percent: bool = False, step: float | None = None) -> str:
    """A tick label: short, without float noise; percent labels keep the decimals their step needs."""
    if percent:
        decimals = max(0, -math.floor(math.log10(step * 100))) if step else 0
        return f"{value * 100:.{decimals}f}%"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def tick_step(ticks: Sequence[float]) -> float | None:
    return abs(ticks[1] - ticks[0]) if len(ticks) > 1 else None


class Frame:
    """A plot area with linear x and y scales, its axes, grid and labels."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        x_label: str,
        y_label: str,
        x_ticks: Sequence[float] | None = None,
        y_percent: bool = False,
        x_percent: bool = False,
        y_zero: bool = False,
    ) -> None:
        y_lo, y_hi = y_range
        if y_zero:
            y_lo = min(0.0, y_lo)
        self.y_ticks = nice_ticks(y_lo, y_hi)
        self.x_ticks = list(x_ticks) if x_ticks is not None else nice_ticks(*x_range)
        self.x_lo = min(self.x_ticks[:1] + [x_range[0]])
        self.x_hi = max(self.x_ticks[-1:] + [x_range[1]])
        self.y_lo, self.y_hi = self.y_ticks[0], self.y_ticks[-1]
        if self.x_hi == self.x_lo:
            self.x_lo, self.x_hi = self.x_lo - 0.5, self.x_hi + 0.5
        self.x_label, self.y_label = x_label, y_label
        self.x_percent, self.y_percent = x_percent, y_percent

    def x(self, value: float) -> float:
        return LEFT + (value - self.x_lo) / (self.x_hi - self.x_lo) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - (value - self.y_lo) / (self.y_hi - self.y_lo) * (HEIGHT - TOP - BOTTOM)

    def axes(self) -> list[str]:
        """Grid lines, tick labels and axis titles."""
        parts = []
        for t in self.y_ticks:
            y = self.y(t)
            parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
            parts.append(
                f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                f"{fmt_tick(t, self.y_percent, tick_step(self.y_ticks))}</text>"
            )
        for t in self.x_ticks:
            x = self.x(t)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM + 5}" stroke="{MUTED}"/>'
            )
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 19}" text-anchor="middle" class="tick">'
                f"{fmt_tick(t, self.x_percent, tick_step(self.x_ticks))}</text>"
            )
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" stroke="{MUTED}"/>'
        )
        parts.append(
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" class="axis">'
            f"{escape(self.x_label)}</text>"
        )
        middle = (TOP + HEIGHT - BOTTOM) / 2
        parts.append(
            f'<text x="16" y="{middle:.1f}" text-anchor="middle" class="axis" '
            f'transform="rotate(-90 16 {middle:.1f})">{escape(self.y_label)}</text>'
        )
        return parts


def svg(body: list[str], label: str) -> str:
    """Wrap chart parts in a scalable <svg> with its own text styles."""
    style = (
        f"<style>.tick{{font:11px system-ui,sans-serif;fill:{MUTED}}}"
        f".axis{{font:12px system-ui,sans-serif;fill:{INK}}}"
        f".note{{font:13px system-ui,sans-serif;fill:{MUTED}}}</style>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}">{style}{"".join(body)}</svg>'
    )


def empty(label: str, note: str) -> str:
    """A chart with nothing to draw says why instead of showing bare axes."""
    return svg(
        [f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="note">{escape(note)}</text>'], label
    )


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    label: str,
    marked: dict[str, set[float]] | None = None,
    integer_x: bool = True,
    step: bool = False,
    y_zero: bool = False,
) -> str:
    """One line per series; `marked` x values get a filled dot (e.g. steps that accepted an edit)."""
    points = [p for values in series.values() for p in values]
    if not points:
        return empty(label, "nothing to plot yet")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks = None
    if integer_x:
        span = int(max(xs) - min(xs))
        every = max(1, math.ceil(span / 10))
        x_ticks = list(range(int(min(xs)), int(max(xs)) + 1, every))
    frame = Frame((min(xs), max(xs)), (min(ys), max(ys)), x_label, y_label, x_ticks=x_ticks, y_zero=y_zero)
    body = frame.axes()
    for n, (name, values) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        values = sorted(values)
        coords = []
        for i, (x, y) in enumerate(values):
            if step and i:
                coords.append(f"{frame.x(x):.1f},{frame.y(values[i - 1][1]):.1f}")
            coords.append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
        body.append(
            f'<g class="series"><title>{escape(name)}</title>'
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" '
            f'points="{" ".join(coords)}"/>'
        )
        hits = (marked or {}).get(name, set())
        for x, y in values:
            fill = colour if x in hits or not marked else "#fff"
            body.append(
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3.5" fill="{fill}" stroke="{colour}" '
                f'stroke-width="1.5"><title>{escape(name)}: {fmt_tick(x)} -> {y:.4g}</title></circle>'
            )
        body.append("</g>")
    return svg(body, label)


def bar_chart(
    bars: list[tuple[str, float, str]],
    x_label: str,
    y_label: str,
    label: str,
    percent: bool = False,
    colour: str = PALETTE[0],
) -> str:
    """Vertical bars: (category, value, note shown above the bar)."""
    if not bars:
        return empty(label, "nothing to plot yet")
    top = max(v for _, v, _ in bars)
    frame = Frame(
        (0, len(bars)), (0, 1.0 if percent else top), x_label, y_label, x_ticks=[], y_percent=percent, y_zero=True
    )
    body = frame.axes()
    width = (WIDTH - LEFT - RIGHT) / len(bars)
    label_every = max(1, math.ceil(len(bars) / 16))
    for i, (name, value, note) in enumerate(bars):
        x0 = LEFT + i * width + width * 0.15
        y0 = frame.y(value)
        body.append(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{width * 0.7:.1f}" height="{frame.y(0) - y0:.1f}" '
            f'fill="{colour}" rx="2"><title>{escape(name)}: {escape(note)}</title></rect>'
        )
        if i % label_every == 0:
            body.append(
                f'<text x="{x0 + width * 0.35:.1f}" y="{HEIGHT - BOTTOM + 19}" text-anchor="middle" '
                f'class="tick">{escape(name)}</text>'
            )
        if note and len(bars) <= 16:
            body.append(
                f'<text x="{x0 + width * 0.35:.1f}" y="{y0 - 6:.1f}" text-anchor="middle" class="tick">'
                f"{escape(note)}</text>"
            )
    return svg(body, label)


def histogram(
    values: list[float], x_label: str, label: str, bins: int = 12, percent: bool = True, colour: str = PALETTE[2]
) -> str:
    """Counts of `values` in equal-width bins, with the mean marked."""
    if not values:
        return empty(label, "no finished item to measure")
    lo, hi = min(values), max(values)
    edges = nice_ticks(lo, hi, count=min(bins, max(3, len(values))) + 1)
    if len(edges) < 2:
        edges = [lo, lo + 1]
    counts = [0] * (len(edges) - 1)
    for v in values:
        i = min(len(counts) - 1, max(0, sum(1 for e in edges[1:-1] if v >= e)))
        counts[i] += 1
    frame = Frame(
        (edges[0], edges[-1]), (0, max(counts)), x_label, "items", x_ticks=edges, x_percent=percent, y_zero=True
    )
    frame.y_ticks = [t for t in frame.y_ticks if t == int(t)] or frame.y_ticks  # whole items only
    body = frame.axes()
    for i, count in enumerate(counts):
        x0, x1 = frame.x(edges[i]), frame.x(edges[i + 1])
        y0 = frame.y(count)
        span = f"{fmt_tick(edges[i], percent, tick_step(edges))} to {fmt_tick(edges[i + 1], percent, tick_step(edges))}"
        body.append(
            f'<rect x="{x0 + 1:.1f}" y="{y0:.1f}" width="{max(0.0, x1 - x0 - 2):.1f}" '
            f'height="{frame.y(0) - y0:.1f}" fill="{colour}" rx="2"><title>{span}: {count}</title></rect>'
        )
    mean = sum(values) / len(values)
    xm = frame.x(mean)
    body.append(
        f'<line x1="{xm:.1f}" x2="{xm:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="{INK}" stroke-dasharray="4 3"/>'
    )
    shown = f"{mean * 100:.2g}%" if percent else f"{mean:.3g}"
    # The label sits on the side of the line with more room.
    anchor, dx = ("end", -6) if xm > (LEFT + WIDTH - RIGHT) / 2 else ("start", 6)
    body.append(
        f'<rect x="{xm + dx - (70 if anchor == "end" else 0):.1f}" y="{TOP + 1}" width="70" height="16" '
        f'fill="#fff" opacity="0.85"/>'
    )
    body.append(f'<text x="{xm + dx:.1f}" y="{TOP + 13}" text-anchor="{anchor}" class="axis">mean {shown}</text>')
    return svg(body, label)
