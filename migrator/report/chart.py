"""The throughput chart as inline SVG, drawn here so the HTML report needs no script and no network.

One ``<g class="bucket">`` per time bucket, carrying its counts as ``data-*`` attributes and a
``<title>`` (the tooltip), holds one stacked bar segment per settled state.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from migrator.report.text import offset, per

# Settled states, bottom of the stack first, and how every format colours a state.
STACK = ("done", "skipped", "orphaned", "invalid", "failed")
COLORS = {
    "done": "#2e7d32",
    "skipped": "#90a4ae",
    "orphaned": "#8e24aa",
    "invalid": "#ef6c00",
    "failed": "#c62828",
    "parked": "#f9a825",
    "pending": "#bdbdbd",
    "rendered": "#64b5f6",
    "submitting": "#42a5f5",
    "submitted": "#1e88e5",
    "polling": "#1565c0",
}
WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 44
MAX_LABELS = 10
# Spacings of the time axis' labels (seconds), so that they read 0, +30 s, +1 min, +1.5 min ...
LABEL_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400)


def nice_step(peak: int, ticks: int = 4) -> int:
    """A 1-2-5 step so that ``ticks`` steps reach at least ``peak``."""
    if peak <= ticks:
        return 1
    raw = peak / ticks
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def label_every(width: float, buckets: int) -> int:
    """Label every n-th bucket: n buckets make a round spacing and at most MAX_LABELS labels."""
    for step in LABEL_STEPS:
        n = round(step / width)
        if n >= 1 and math.isclose(n * width, step) and buckets / n <= MAX_LABELS:
            return n
    return max(1, math.ceil(buckets / MAX_LABELS))


def svg(throughput: dict[str, Any]) -> str:
    buckets: list[dict[str, Any]] = throughput["buckets"]
    width = float(throughput["bucket_s"])
    peak = max((b["settled"] for b in buckets), default=0)
    step = nice_step(peak)
    top = step * max(1, math.ceil(peak / step))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(buckets)
    bar = max(slot * 0.8, 1.0)

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="items settled per {escape(per(width))} of the run" '
        f'data-buckets="{len(buckets)}" data-bucket-s="{width:g}" '
        f'data-settled="{sum(b["settled"] for b in buckets)}">'
    ]
    for tick in range(0, top + 1, step):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{"#9e9e9e" if tick == 0 else "#e6e6e6"}" stroke-width="1"/>'
            f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#616161">{tick}</text>'
        )
    every = label_every(width, len(buckets))
    for i, b in enumerate(buckets):
        x = LEFT + i * slot + (slot - bar) / 2
        counts = " ".join(f'data-{s}="{b[s]}"' for s in STACK)
        shown = ", ".join(f"{b[s]} {s}" for s in STACK if b[s])
        label = f"{offset(b['offset_s'])} to {offset(b['offset_s'] + width)}: {b['settled']} settled"
        parts.append(
            f'<g class="bucket" data-offset-s="{b["offset_s"]:g}" data-settled="{b["settled"]}" {counts}>'
            f"<title>{escape(label + (f' ({shown})' if shown else ''))}</title>"
        )
        base = 0
        for state in STACK:
            if b[state]:
                parts.append(
                    f'<rect class="{state}" x="{x:.1f}" y="{y(base + b[state]):.1f}" width="{bar:.1f}" '
                    f'height="{y(base) - y(base + b[state]):.1f}" fill="{COLORS[state]}"/>'
                )
                base += b[state]
        parts.append("</g>")
        if i % every == 0:
            parts.append(
                f'<text x="{LEFT + i * slot:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
                f'font-size="12" fill="#616161">{escape(offset(b["offset_s"]))}</text>'
            )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="12" '
        f'fill="#616161">time since the run started</text>'
        f'<text transform="translate(14 {TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'font-size="12" fill="#616161">items per {escape(per(width))}</text>'
        "</svg>"
    )
    return "".join(parts)
