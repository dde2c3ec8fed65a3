"""Charts as inline SVG, drawn on the server: readable without JavaScript and allowed by a strict CSP.

Colours and fonts come from classes in portal.css (no style attributes: the CSP forbids
inline styles). Every chart also hands its numbers to the template, which prints them as a
table, because a picture of bars says nothing to a screen reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable, Sequence

from markupsafe import Markup, escape

PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 14, 28
# The drawing is scaled to the box it sits in; a narrower canvas for half-width charts keeps
# their labels readable.
SIZES = {"wide": (720, 240), "compact": (480, 230)}
# A bar as wide as the plot (one day of data) reads as a filled box, not a day: bars stay day-sized.
MAX_BAR_WIDTH = 36.0


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]  # None: no data that day (a gap in a line)
    css: str = "series-1"
    summable: bool = True  # False for rates and latencies: a total of them means nothing


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    unit: str
    labels: list[str]
    series: list[Series]
    svg: Markup

    @property
    def rows(self) -> list[tuple[str, list[float | None]]]:
        return [(label, [s.values[i] for s in self.series]) for i, label in enumerate(self.labels)]

    @property
    def empty(self) -> bool:
        return not any(v for s in self.series for v in s.values if v is not None)


def nice_scale(value: float, ticks: int = 4) -> tuple[float, float]:
    """(axis maximum, tick step): the step is 1, 2 or 5 times a power of ten, at least 1, so
    small counts get whole-number gridlines (0, 1, 2, 3) rather than 1.25 and 3.75."""
    if value <= 0:
        return float(ticks), 1.0
    raw = value / ticks
    exponent = math.floor(math.log10(raw))
    step = next(m * 10**exponent for m in (1, 2, 5, 10) if m * 10**exponent >= raw)
    step = max(1.0, float(step))
    return step * math.ceil(value / step), step


def fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def day_range(start: date, end: date) -> list[date]:
    days = (end - start).days
    return [start + timedelta(days=i) for i in range(days + 1)]


def day_label(d: date) -> str:
    return f"{d.day} {d.strftime('%b')}"


def bar_chart(chart_id: str, title: str, labels: Sequence[str], values: Sequence[float | None], *, unit: str,
              css: str = "series-1", size: str = "wide") -> Chart:
    series = [Series(title, [float(v or 0) for v in values], css)]
    svg = _svg(chart_id, title, unit, list(labels), series, bars=True, size=size)
    return Chart(chart_id, title, unit, list(labels), series, svg)


def line_chart(chart_id: str, title: str, labels: Sequence[str], series: Iterable[Series], *, unit: str,
               size: str = "wide") -> Chart:
    series = list(series)
    svg = _svg(chart_id, title, unit, list(labels), series, bars=False, size=size)
    return Chart(chart_id, title, unit, list(labels), series, svg)


def _svg(chart_id: str, title: str, unit: str, labels: list[str], series: list[Series], *, bars: bool, size: str) -> Markup:
    WIDTH, HEIGHT = SIZES[size]
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    top, step = nice_scale(max((v for s in series for v in s.values if v is not None), default=0))
    n = max(len(labels), 1)
    slot = plot_w / n

    def y(v: float) -> float:
        return PAD_TOP + plot_h - (v / top) * plot_h

    parts: list[str] = []
    total = sum(v for s in series for v in s.values if v is not None)
    summary = f"{title}: " + (
        "no data in this period." if total == 0
        else ", ".join(_series_summary(s, labels, unit, named=len(series) > 1) for s in series)
    )
    parts.append(
        f'<svg class="chart chart-{size}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart_id}-title" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{chart_id}-title">{escape(summary)}</title>'
    )
    for i in range(int(round(top / step)) + 1):
        gy = y(step * i)
        parts.append(f'<line class="chart-grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        parts.append(f'<text class="chart-tick" x="{PAD_LEFT - 8}" y="{gy + 4:.1f}" text-anchor="end">{fmt(step * i)}</text>')

    every = max(1, math.ceil(n / (10 if size == "wide" else 6)))
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1 and n <= 12:
            cx = PAD_LEFT + slot * (i + 0.5)
            parts.append(f'<text class="chart-tick" x="{cx:.1f}" y="{HEIGHT - 10}" text-anchor="middle">{escape(label)}</text>')

    if bars:
        bar_w = min(MAX_BAR_WIDTH, max(2.0, slot * 0.7))
        for s in series:
            for i, v in enumerate(s.values):
                x = PAD_LEFT + slot * i + (slot - bar_w) / 2
                h = max(0.0, PAD_TOP + plot_h - y(v))
                parts.append(
                    f'<rect class="chart-bar {s.css}" x="{x:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" height="{h:.1f}" rx="2">'
                    f"<title>{escape(labels[i])}: {fmt(v)} {escape(unit)}</title></rect>"
                )
    else:
        for s in series:
            for segment in _segments(s.values):
                points = " ".join(f"{PAD_LEFT + slot * (i + 0.5):.1f},{y(v):.1f}" for i, v in segment)
                parts.append(f'<polyline class="chart-line {s.css}" fill="none" points="{points}"/>')
            for i, v in enumerate(s.values):
                if v is None:
                    continue
                parts.append(
                    f'<circle class="chart-dot {s.css}" cx="{PAD_LEFT + slot * (i + 0.5):.1f}" cy="{y(v):.1f}" r="2.5">'
                    f"<title>{escape(s.name)}, {escape(labels[i])}: {fmt(v)} {escape(unit)}</title></circle>"
                )
    parts.append(f'<line class="chart-axis" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _segments(values: list[float | None]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive days with data: a line is not drawn through a day without any."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, v))
    return [r for r in runs if r]


def _series_summary(s: Series, labels: list[str], unit: str, *, named: bool) -> str:
    known = [i for i, v in enumerate(s.values) if v is not None]
    name = f"{s.name} " if named else ""
    if not known:
        return f"{name}no data"
    peak = max(known, key=lambda i: s.values[i])
    peak_text = f"peak {fmt(s.values[peak])} {unit} on {labels[peak]}"
    total = sum(s.values[i] for i in known)
    return f"{name}total {fmt(total)} {unit}, {peak_text}" if s.summable else f"{name}{peak_text}"
