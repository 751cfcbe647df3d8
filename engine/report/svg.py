"""Line charts as inline SVG text: polylines, axes and labels, nothing to load."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 24, 32
COLOURS = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def line_chart(chart_id: str, title: str, series: Sequence[tuple[str, Sequence[float | None]]],
               *, x_label: str = "", fill: bool = False) -> str:
    """An <svg id=chart_id> with one polyline per (name, values); None values are gaps."""
    finite = [v for _, values in series for v in values if v is not None and math.isfinite(v)]
    n = max((len(values) for _, values in series), default=0)
    parts = [f'<svg id="{escape(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" '
             f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>',
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
             f'<text x="{LEFT}" y="16" font-size="13" font-family="sans-serif">'
             f'{escape(title)}</text>']
    if not finite or n == 0:
        parts.append(f'<text x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle" '
                     'font-size="12" font-family="sans-serif">no data</text></svg>')
        return "".join(parts)
    lo, hi = min(finite), max(finite)
    if hi == lo:
        pad = abs(hi) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (hi - v) / (hi - lo)

    parts.append(f'<g stroke="#999" stroke-width="1"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" '
                 f'y2="{TOP + plot_h}"/><line x1="{LEFT}" y1="{TOP + plot_h}" '
                 f'x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/></g>')
    for value in (hi, (hi + lo) / 2, lo):
        parts.append(f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end" '
                     f'font-size="10" font-family="sans-serif">{escape(_fmt(value))}</text>')
    if x_label:
        parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                     f'font-size="10" font-family="sans-serif">{escape(x_label)}</text>')
    for k, (name, values) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        segments: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if v is None or not math.isfinite(v):
                segments.append([])
            else:
                segments[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for seg in segments:
            if not seg:
                continue
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
                continue
            if fill:
                first_x, last_x = seg[0].split(",")[0], seg[-1].split(",")[0]
                base = f"{y(max(lo, 0.0) if lo <= 0 <= hi else lo):.1f}"
                parts.append(f'<polygon points="{first_x},{base} {" ".join(seg)} '
                             f'{last_x},{base}" fill="{colour}" fill-opacity="0.2" '
                             'stroke="none"/>')
            parts.append(f'<polyline class="series" data-series="{escape(name)}" '
                         f'points="{" ".join(seg)}" fill="none" stroke="{colour}" '
                         'stroke-width="1.5"/>')
        parts.append(f'<text x="{LEFT + plot_w - 4 - 90 * (len(series) - 1 - k)}" y="16" '
                     f'text-anchor="end" font-size="11" font-family="sans-serif" '
                     f'fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
