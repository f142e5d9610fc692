"""The replay report as one self-contained HTML page for the on-call engineer.

``render_html(report)`` is pure: the report dict (built by ``report.py``) in, a page out. The
CSS is inline and the charts are SVG drawn here, so the file opens from disk, from a ticket or
offline, with no script and no network. Every text from the report is escaped. Each chart sits
in an element with a stable id and ``data-points`` (the points it drew); a null value leaves a
gap, and a chart with nothing to draw says "no data".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from typing import Any

from stream_app.timeparse import format_ms

COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
THRESHOLD = "#1d2430"  # not a series colour: the red series must not look like it
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 42
NONE = "—"
# steps of the time axis, in seconds: the first that gives at most six ticks is used
TIME_STEPS_S = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)
Tick = tuple[float, str]
Point = tuple[float, float]

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2430; }
header { background: #1d2430; color: #fff; padding: 10px 18px; }
header h1 { font-size: 18px; margin: 0 0 4px; }
header span { margin-right: 20px; font-size: 13px; opacity: .9; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 14px;
       padding: 14px; }
section, details { background: #fff; border: 1px solid #dde1e7; border-radius: 6px;
                   padding: 10px 12px; }
h2 { font-size: 14px; margin: 0 0 6px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eef0f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.primary { background: #fff7d6; font-weight: 600; }
.best { color: #1a7f37; font-weight: 600; }
.alarm, .warning { color: #b3261e; font-weight: 600; }
.warning { background: #fdecea; border: 1px solid #f5c2c0; margin: 14px 14px 0; padding: 8px 12px; }
.winner { border-color: #1a7f37; background: #f0faf3; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 11px; fill: #4b5563; }
svg .axis { stroke: #9ca3af; } svg .grid { stroke: #eef0f3; }
svg .empty { font-size: 15px; fill: #9ca3af; }
.legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.legend i.dashed { height: 0; border-top: 2px dashed #1d2430; vertical-align: middle; }
"""


@dataclass(frozen=True)
class Scale:
    """A linear map from the data interval ``[lo, hi]`` onto pixels ``start`` to ``end``."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = (self.hi - self.lo) or 1.0
        return self.start + (value - self.lo) / span * (self.end - self.start)


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page: header, summary, metrics per version, winner, four charts, the plan."""
    series = _dict(report.get("series"))
    title = f"Replay {report.get('use_case', '')} {report.get('run_id', '')}"
    body = "".join(
        (
            _summary(report),
            _metrics(report),
            _winner(report),
            _error_over_time(_dict(series.get("error_over_time"))),
            _error_distribution(_dict(series.get("error_distribution"))),
            _versus(_dict(series.get("versus"))),
            _drift(_dict(series.get("drift"))),
            _plan(report),
        )
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f'</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body>{_header(report)}<main>{body}</main></body></html>\n"
    )


# -- the parts of the page ------------------------------------------------------------------


def _header(report: Mapping[str, Any]) -> str:
    span = f"{_iso(report.get('from'))} → {_iso(report.get('to'))}"
    warning = ""
    if report.get("interrupted"):
        warning = (
            '<p class="warning" id="interrupted" role="alert">Interrupted: the replay '
            "stopped before the end of the range; the figures cover what was read.</p>"
        )
    return (
        f"<header><h1>Replay of {_text(report.get('use_case'))}</h1>"
        f"<span>topic <b>{_text(report.get('topic'))}</b></span><span>{escape(span)} UTC</span>"
        f"<span>run {_text(report.get('run_id'))}</span></header>{warning}"
    )


def _summary(report: Mapping[str, Any]) -> str:
    events, features = _dict(report.get("events")), _dict(report.get("features"))
    messages = events.get("messages")
    rows = [_row("messages", _count(messages))]
    rows += [_row(name, _count(events.get(name), messages)) for name in ("scored", "labelled")]
    invalid = _dict(events.get("invalid"))
    rows += [_row(f"invalid: {code}", _count(n, messages)) for code, n in invalid.items()]
    if not invalid:
        rows.append(_row("invalid", "0"))
    rows.append(_row("features served", _count(features.get("served"), messages)))
    rows.append(_row("features point-in-time", _count(features.get("point_in_time"), messages)))
    timing = _dict(report.get("timing"))
    if timing.get("seconds") is not None:
        rate = f", {_count(timing.get('events_per_s'))} events/s"
        rows.append(_row("replay took", f"{_number_text(timing.get('seconds'))} s{rate}"))
    return f'<section id="summary"><h2>Summary</h2><table>{"".join(rows)}</table></section>'


def _metrics(report: Mapping[str, Any]) -> str:
    versions = [v for v in report.get("versions") or [] if isinstance(v, dict)]
    primary = report.get("primary_metric")
    higher = set(report.get("higher_is_better") or [])
    names = list(dict.fromkeys(n for v in versions for n in _dict(v.get("metrics"))))
    names.sort(key=lambda n: n != primary)  # the primary metric first
    head = "".join(f"<th>{_text(v.get('version'))}</th>" for v in versions)
    rows = [f"<tr><th>metric</th>{head}</tr>"]
    for name in names:
        values = [_number(_dict(v.get("metrics")).get(name)) for v in versions]
        rows.append(_metric_row(name, values, name == primary, name in higher))
    estimated = [_dict(v.get("estimated")) for v in versions]
    for name in names if any(estimated) else []:
        figures = [_dict(e.get("metrics")).get(name) for e in estimated]
        if any(f is not None for f in figures):
            methods = "/".join(sorted({str(e["method"]) for e in estimated if e}))
            rows.append(_row(f"{name} estimated without labels ({methods})",
                             *(_number_text(f) for f in figures)))  # fmt: skip
    rows.append(_row("labelled", *(_count(v.get("labelled")) for v in versions)))
    production = [_dict(v.get("production")) for v in versions]
    if any(production):
        rows.append(_row("production: compared", *(_count(p.get("compared")) for p in production)))
        rows.append(_row("production: identical", *map(_identical, production)))
        diffs = (_number_text(p.get("max_abs_difference")) for p in production)
        rows.append(_row("production: max |difference|", *diffs))
    return f'<section id="metrics"><h2>Metrics</h2><table>{"".join(rows)}</table></section>'


def _metric_row(name: str, values: list[float | None], primary: bool, higher: bool) -> str:
    known = [v for v in values if v is not None]
    best = (max(known) if higher else min(known)) if len(known) > 1 else None
    cells = "".join(
        f'<td class="n{" best" if v is not None and v == best else ""}">{_number_text(v)}</td>'
        for v in values
    )
    label = f"{escape(name)} (primary)" if primary else escape(name)
    row_class = ' class="primary"' if primary else ""
    return f"<tr{row_class}><th>{label}</th>{cells}</tr>"


def _identical(production: dict[str, Any]) -> str:
    """Identical predictions, flagged when fewer than those compared."""
    identical, compared = _number(production.get("identical")), _number(production.get("compared"))
    differ = identical is not None and compared is not None and identical < compared
    return f'<span class="alarm">{_count(identical)}</span>' if differ else _count(identical)


def _winner(report: Mapping[str, Any]) -> str:
    winner = report.get("winner")
    if not isinstance(winner, dict):
        return ""
    metric = _text(winner.get("metric"))
    values = ", ".join(
        f"{escape(str(v))} {_number_text(x)}" for v, x in _dict(winner.get("values")).items()
    )
    improvement = _number(winner.get("improvement"))
    gain = NONE if improvement is None else f"{improvement:.1%}"
    reasons = "".join(f"<li>{_text(r)}</li>" for r in winner.get("reasons") or [])
    version = winner.get("version")  # None: a tie
    heading = "No winner: a tie" if version is None else f"Winner: {_text(version)}"
    return (
        f'<section id="winner" class="winner"><h2>{heading}</h2>'
        f"<p>{metric}: {values}<br>improvement {gain}, "
        f"p-value {_number_text(winner.get('p_value'), 3)}</p><ul>{reasons}</ul></section>"
    )


def _plan(report: Mapping[str, Any]) -> str:
    plan = _dict(report.get("plan"))
    partitions = [_dict(p) for p in plan.get("partitions") or []]
    head = "<tr><th>partition</th><th>start</th><th>end</th><th>messages</th></tr>"
    rows = "".join(
        _row(p.get("partition"), *(_count(p.get(k)) for k in ("start", "end", "messages")))
        for p in partitions
    )
    return (
        f'<details id="plan"><summary>Plan: {_count(plan.get("messages"))} messages in '
        f"{len(partitions)} partitions of {_text(plan.get('topic'))}</summary>"
        f"<table>{head}{rows}</table></details>"
    )


# -- the charts ------------------------------------------------------------------------------


def _error_over_time(series: dict[str, Any]) -> str:
    metric = str(series.get("metric") or "error")
    by_version = _dict(series.get("by_version"))
    points, body, _ = _line_plot(series.get("buckets") or [], by_version, metric)
    title = f"{metric} per {_duration(series.get('bucket_ms'))} bucket"
    return _chart("error-over-time", title, points, body, _legend(_colored(by_version)))


def _drift(series: dict[str, Any]) -> str:
    metric = str(series.get("metric") or "drift")
    features = _dict(series.get("features"))
    threshold = _number(series.get("threshold"))
    also = [] if threshold is None else [threshold]
    points, body, y = _line_plot(series.get("buckets") or [], features, metric, also)
    labels = []
    for name, values in features.items():
        known = [v for v in map(_number, values or []) if v is not None]
        peak = max(known, default=None)
        above = threshold is not None and peak is not None and peak > threshold
        labels.append(f"{name} (max {_number_text(peak)}{', above threshold' if above else ''})")
    if threshold is not None and y is not None:
        ty = y(threshold)
        body += (
            f'<line x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" y2="{ty:.1f}" '
            f'stroke="{THRESHOLD}" stroke-dasharray="6 4"/>'
        )
    dashed = "" if threshold is None else f"threshold {_number_text(threshold)}"
    legend = _legend(((COLORS[i % len(COLORS)], t) for i, t in enumerate(labels)), dashed)
    return _chart("drift", f"Drift per feature ({metric})", points, body, legend)


def _error_distribution(series: dict[str, Any]) -> str:
    quantity = str(series.get("quantity") or "error")
    by_version = _dict(series.get("by_version"))
    title = f"Distribution of {quantity}"
    known = _edges(series.get("edges"))
    if known is None:
        return _chart("error-distribution", title, 0, "")
    bins = len(known) - 1
    counts = {n: [_number(c) or 0.0 for c in (v or [])[:bins]] for n, v in by_version.items()}
    top = max((c for cs in counts.values() for c in cs), default=0.0)
    if top <= 0:
        return _chart("error-distribution", title, 0, "")
    x_ticks = [t for t in nice_ticks(known[0], known[-1]) if known[0] <= t <= known[-1]]
    y_ticks = nice_ticks(0.0, top)
    x, y = _x_scale(known[0], known[-1]), _y_scale(0.0, y_ticks[-1])
    parts = [_frame(x, y, _labelled(x_ticks), _labelled(y_ticks), quantity, "events")]
    share = 1 / max(len(counts), 1)
    for index, (name, values) in enumerate(counts.items()):
        color = COLORS[index % len(COLORS)]
        for i, count in enumerate(values):
            if count <= 0:
                continue
            left, right = x(known[i]), x(known[i + 1])
            width = (right - left) * share
            parts.append(
                f'<rect x="{left + index * width:.1f}" y="{y(count):.1f}" '
                f'width="{max(width - 0.5, 0.5):.1f}" height="{y(0.0) - y(count):.1f}" '
                f'fill="{color}"><title>{escape(name)}: [{known[i]:.4g}, {known[i + 1]:.4g}) '
                f"{count:.0f}</title></rect>"
            )
    points = sum(c > 0 for cs in counts.values() for c in cs)
    return _chart("error-distribution", title, points, "".join(parts), _legend(_colored(counts)))


def _edges(value: Any) -> list[float] | None:
    """Histogram edges when they are at least two finite numbers in increasing order."""
    edges = [_number(e) for e in value or []]
    known = [e for e in edges if e is not None]
    ordered = all(a < b for a, b in pairwise(known))
    return known if len(known) >= 2 and len(known) == len(edges) and ordered else None


def _versus(series: dict[str, Any]) -> str:
    x_name, y_name = str(series.get("x") or "x"), str(series.get("y") or "y")
    metric = str(series.get("metric") or "")
    title = f"{y_name} versus {x_name} ({metric})" if metric else f"{y_name} versus {x_name}"
    points = [p for p in map(_pair, series.get("points") or []) if p is not None]
    if not points:
        return _chart("versus", title, 0, "")
    values = [v for p in points for v in p]
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    x, y = _x_scale(lo, hi), _y_scale(lo, hi)
    parts = [_frame(x, y, _labelled(ticks), _labelled(ticks), x_name, y_name)]
    parts.append(
        f'<line x1="{x(lo):.1f}" y1="{y(lo):.1f}" x2="{x(hi):.1f}" y2="{y(hi):.1f}" '
        f'stroke="{COLORS[-1]}" stroke-dasharray="4 3"/>'
    )
    parts += [
        f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="2" fill="{COLORS[0]}" fill-opacity=".45"/>'
        for px, py in points
    ]
    legend = _legend([(COLORS[0], f"{len(points)} events"), (COLORS[-1], "y = x")])
    return _chart("versus", title, len(points), "".join(parts), legend)


def _line_plot(
    buckets: Sequence[Any], lines: dict[str, Any], y_name: str, also: Sequence[float] = ()
) -> tuple[int, str, Scale | None]:
    """A line per name over the bucket times (a gap at each null): points, SVG, y scale."""
    times = [_number(t) for t in buckets]
    series = {
        name: [
            (t, v) if t is not None and v is not None else None
            for t, v in zip(times, map(_number, values or []), strict=False)
        ]
        for name, values in lines.items()
    }
    drawn = [p for line in series.values() for p in line if p is not None]
    if not drawn:
        return 0, "", None
    known_times = [t for t in times if t is not None]
    start, end = min(known_times), max(known_times)
    values = [p[1] for p in drawn] + list(also)
    y_ticks = nice_ticks(min(values), max(values))
    x = _x_scale(start, end if end > start else start + 60_000)
    y = _y_scale(y_ticks[0], y_ticks[-1])
    parts = [_frame(x, y, time_ticks(x.lo, x.hi), _labelled(y_ticks), "time (UTC)", y_name)]
    for index, line in enumerate(series.values()):
        pixels = [None if p is None else (x(p[0]), y(p[1])) for p in line]
        parts.append(_polyline(pixels, COLORS[index % len(COLORS)]))
    return len(drawn), "".join(parts), y


def _polyline(pixels: Sequence[Point | None], color: str) -> str:
    """A path that lifts the pen at each gap, and a dot for a point alone between gaps."""
    path: list[str] = []
    dots: list[str] = []
    for i, p in enumerate(pixels):
        if p is None:
            continue
        before = i > 0 and pixels[i - 1] is not None
        after = i + 1 < len(pixels) and pixels[i + 1] is not None
        path.append(f"{'L' if before else 'M'}{p[0]:.1f} {p[1]:.1f}")
        if not before and not after:
            dots.append(f'<circle cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="2.5" fill="{color}"/>')
    line = f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2"/>'
    return line + "".join(dots)


def _chart(chart_id: str, title: str, points: int, body: str, legend: str = "") -> str:
    """The chart's element, with its id and ``data-points``; "no data" when nothing is drawn."""
    if points == 0:
        body = (
            f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{HEIGHT - TOP - BOTTOM}" fill="none" class="axis"/>'
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" '
            'text-anchor="middle">no data</text>'
        )
        legend = ""
    return (
        f'<section class="chart" id="{chart_id}" data-points="{points}"><h2>{escape(title)}</h2>'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">{body}</svg>{legend}</section>'
    )


def _frame(
    x: Scale, y: Scale, x_ticks: list[Tick], y_ticks: list[Tick], x_name: str, y_name: str
) -> str:
    """Both axes with grid lines, tick labels and the axis names."""
    bottom, top = y.start, y.end
    parts = [
        f'<line class="axis" x1="{x.start}" y1="{bottom}" x2="{x.end}" y2="{bottom}"/>',
        f'<line class="axis" x1="{x.start}" y1="{bottom}" x2="{x.start}" y2="{top}"/>',
    ]
    for value, label in x_ticks:
        px = x(value)
        parts.append(
            f'<line class="grid" x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}"/>'
            f'<text x="{px:.1f}" y="{bottom + 14}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    for value, label in y_ticks:
        py = y(value)
        parts.append(
            f'<line class="grid" x1="{x.start}" y1="{py:.1f}" x2="{x.end}" y2="{py:.1f}"/>'
            f'<text x="{x.start - 5}" y="{py + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    middle_x, middle_y = (x.start + x.end) / 2, (top + bottom) / 2
    parts.append(
        f'<text x="{middle_x}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{escape(x_name)}</text>"
        f'<text transform="rotate(-90)" x="{-middle_y}" y="13" text-anchor="middle">'
        f"{escape(y_name)}</text>"
    )
    return "".join(parts)


def _legend(entries: Iterable[tuple[str, str]], dashed: str = "") -> str:
    """``(colour, label)`` swatches, and a dashed dark one (a threshold) when ``dashed``."""
    items = [f'<span><i style="background:{c}"></i>{escape(label)}</span>' for c, label in entries]
    if dashed:
        items.append(f'<span><i class="dashed"></i>{escape(dashed)}</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def _colored(named: dict[str, Any]) -> list[tuple[str, str]]:
    return [(COLORS[i % len(COLORS)], name) for i, name in enumerate(named)]


# -- scales, ticks and numbers -----------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2, 2.5 or 5 times a power of ten) covering ``[lo, hi]``."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.floor(lo / step), math.ceil(hi / step) + 1)]


def time_ticks(lo_ms: float, hi_ms: float, count: int = 6) -> list[Tick]:
    """Round UTC times in ``[lo_ms, hi_ms]``, labelled as precisely as their step needs."""
    span_s = max((hi_ms - lo_ms) / 1000, 1.0)
    step_s = next((s for s in TIME_STEPS_S if span_s / s <= count), None)
    if step_s is None:  # more than six weeks: whole weeks
        step_s = TIME_STEPS_S[-1] * math.ceil(span_s / count / TIME_STEPS_S[-1])
    step = step_s * 1000
    form = "%H:%M:%S" if step_s < 60 else "%H:%M" if step_s < 86400 else "%m-%d"
    if step_s < 86400 and span_s > 86400:
        form = "%m-%d %H:%M"
    first = math.ceil(lo_ms / step) * step
    times = range(first, math.floor(hi_ms) + 1, step)
    return [(t, datetime.fromtimestamp(t / 1000, UTC).strftime(form)) for t in times]


def _x_scale(lo: float, hi: float) -> Scale:
    return Scale(lo, hi, LEFT, WIDTH - RIGHT)


def _y_scale(lo: float, hi: float) -> Scale:
    return Scale(lo, hi, HEIGHT - BOTTOM, TOP)


def _labelled(values: Sequence[float]) -> list[Tick]:
    return [(v, _tick_text(v)) for v in values]


def _tick_text(value: float) -> str:
    if abs(value) >= 1000 and value == round(value):
        return f"{round(value):,}"
    return f"{value:.4g}"


def _number(value: Any) -> float | None:
    """A finite number, or None (null, text, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _pair(point: Any) -> Point | None:
    if not isinstance(point, list | tuple) or len(point) != 2:
        return None
    x, y = _number(point[0]), _number(point[1])
    return None if x is None or y is None else (x, y)


def _number_text(value: Any, digits: int = 4) -> str:
    number = _number(value)
    return NONE if number is None else f"{number:.{digits}g}"


def _count(value: Any, total: Any = None) -> str:
    """A count with thousands separators, and its share of ``total`` when there is one."""
    number = _number(value)
    if number is None:
        return NONE
    text = f"{number:,.0f}" if number == round(number) else f"{number:,.1f}"
    whole = _number(total)
    return f"{text} ({number / whole:.1%})" if whole else text


def _iso(ms: Any) -> str:
    number = _number(ms)
    try:
        return NONE if number is None else format_ms(int(number))
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _duration(ms: Any) -> str:
    number = _number(ms)
    if number is None or number <= 0:
        return "time"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if number >= size and number % size == 0:
            return f"{number / size:.0f} {unit}"
    return f"{number:.0f} ms"


def _row(label: Any, *cells: str) -> str:
    """A table row: the label escaped, the cells already HTML."""
    data = "".join(f'<td class="n">{cell}</td>' for cell in cells)
    return f"<tr><th>{_text(label)}</th>{data}</tr>"


def _text(value: Any) -> str:
    return NONE if value is None else escape(str(value))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
