"""Two small inline-SVG plots for the drill report: state lanes and step lines.

Why not matplotlib: the report needs two plot kinds, a strip of coloured lanes and a few
step lines on a time axis; matplotlib (with numpy) would add tens of megabytes of wheels
to a hash-pinned install for that, and its SVG output embeds fonts and ids that make
reports hard to diff. This writer is pure, deterministic and escapes every label.
Times are Unix milliseconds; the x axis shows seconds from the window's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

STATE_COLOURS = {
    "up": "#2e7d32",
    "degraded": "#f9a825",  # slow or just back
    "down": "#c62828",
    "disabled": "#6a1b9a",
}
LINE_COLOURS = ("#1565c0", "#ef6c00", "#6a1b9a", "#2e7d32", "#c62828")
LEFT, RIGHT, TOP = 130, 16, 10


def _x(t: int, t0: int, t1: int, width: int) -> float:
    span = max(t1 - t0, 1)
    return LEFT + (t - t0) * (width - LEFT - RIGHT) / span


def _axis(t0: int, t1: int, width: int, y: float) -> list[str]:
    """A time axis at ``y`` with about six ticks on round seconds."""
    span_s = max((t1 - t0) / 1000, 0.001)
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600)
                 if span_s / s <= 6), 7200)  # fmt: skip
    parts = [f'<line x1="{LEFT}" y1="{y}" x2="{width - RIGHT}" y2="{y}" stroke="#555"/>']
    tick = 0.0
    while tick <= span_s + 1e-9:
        x = _x(t0 + int(tick * 1000), t0, t1, width)
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#555"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y + 16}" font-size="11" text-anchor="middle">{tick:g} s</text>'
        )
        tick += step
    return parts


def lanes(
    rows: Sequence[tuple[str, Sequence[tuple[int, int, str]]]], t0: int, t1: int, width: int = 900
) -> str:
    """One lane per row: its (start, end, state) segments coloured by state."""
    lane_h = 22
    height = TOP + lane_h * len(rows) + 30
    parts = [_open("lanes", width, height, "Link states over time")]
    for n, (label, segments) in enumerate(rows):
        y = TOP + n * lane_h
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for start, end, state in segments:
            x0, x1 = _x(start, t0, t1, width), _x(end, t0, t1, width)
            colour = STATE_COLOURS.get(state, "#9e9e9e")
            parts.append(
                f'<rect class="seg" data-state="{escape(state)}" x="{x0:.1f}" y="{y + 3}" '
                f'width="{max(x1 - x0, 0.5):.1f}" height="{lane_h - 6}" fill="{colour}">'
                f"<title>{escape(label)}: {escape(state)}</title></rect>"
            )
    parts += _axis(t0, t1, width, TOP + lane_h * len(rows) + 4)
    parts.append("</svg>")
    return "".join(parts)


def steps(
    series: Sequence[tuple[str, Sequence[tuple[int, float]]]],
    t0: int,
    t1: int,
    width: int = 900,
    height: int = 220,
) -> str:
    """Step lines (each value holds until the next point), a shared y axis from 0."""
    top = max([v for _, points in series for _, v in points] + [1])
    plot_h = height - TOP - 50
    parts = [_open("steps", width, height, "Items over time")]

    def y(v: float) -> float:
        return TOP + plot_h - v * plot_h / top

    for value, at in ((top, TOP + 10), (0, TOP + plot_h)):
        parts.append(
            f'<text x="{LEFT - 6}" y="{at}" font-size="11" text-anchor="end">{value:g}</text>'
        )
    for n, (label, points) in enumerate(series):
        colour = LINE_COLOURS[n % len(LINE_COLOURS)]
        path, last = [], 0.0
        for t, v in [(t0, 0.0), *points, (t1, None)]:
            x = _x(t, t0, t1, width)
            path.append(f"L{x:.1f},{y(last):.1f}")
            if v is not None:
                path.append(f"L{x:.1f},{y(v):.1f}")
                last = v
        d = "M" + " ".join(path)[1:]
        parts.append(
            f'<path class="series" data-series="{escape(label)}" d="{d}" fill="none" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        lx = LEFT + n * 150
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="12" height="4" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16}" y="{height - 9}" font-size="12">{escape(label)}</text>')
    parts += _axis(t0, t1, width, TOP + plot_h)
    parts.append("</svg>")
    return "".join(parts)


def _open(kind: str, width: int, height: int, title: str) -> str:
    return (
        f'<svg class="plot" data-plot="{kind}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )
