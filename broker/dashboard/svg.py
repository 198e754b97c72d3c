"""Charts drawn as inline SVG on the server: no script, no CDN, nothing for a CSP to allow.

Every number a chart shows is also in its `<title>` elements (tooltips, screen readers) and
in the tables beside it, so a chart is never the only place a value lives.
"""

from __future__ import annotations

import time
from collections import defaultdict
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
W, H, PAD = 640, 180, 28


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def gauge(label: str, percent: float | None, caption: str) -> str:
    """A horizontal gauge: filled to `percent`, amber from 80%, red from 95%."""
    pct = 0.0 if percent is None else max(0.0, min(percent, 100.0))
    fill = "#d62728" if pct >= 95 else "#ff9f1c" if pct >= 80 else "#2a9d8f"
    shown = "?" if percent is None else f"{percent:.0f}%"
    return (f'<svg class="gauge" role="img" viewBox="0 0 300 46" width="300" height="46" '
            f'aria-label="{escape(label)} {shown}"><title>{escape(label)} {shown}</title>'
            f'<text x="0" y="13" class="gl">{escape(label)}</text>'
            f'<text x="300" y="13" text-anchor="end" class="gv">{shown}</text>'
            f'<rect x="0" y="18" width="300" height="12" rx="6" fill="#e6e6e6"/>'
            f'<rect x="0" y="18" width="{pct * 3:.1f}" height="12" rx="6" fill="{fill}"/>'
            f'<text x="0" y="44" class="gc">{escape(caption)}</text></svg>')


def stacked_bars(series: list[tuple[float, str, int]], since: float, bucket: float, buckets: int,
                 title: str) -> tuple[str, list[str]]:
    """Tokens per bucket, stacked by group; returns the SVG and the groups in colour order."""
    totals: dict[str, int] = defaultdict(int)
    cells: dict[int, dict[str, int]] = defaultdict(dict)
    for start, group, tokens in series:
        i = int((start - since) // bucket)
        if 0 <= i < buckets:
            cells[i][group] = cells[i].get(group, 0) + tokens
            totals[group] += tokens
    groups = sorted(totals, key=lambda g: (-totals[g], g))
    peak = max((sum(c.values()) for c in cells.values()), default=0) or 1
    bw = (W - PAD) / buckets
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {W} {H + 20}" width="{W}" height="{H + 20}" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="0" y="10" class="axis">{peak}</text><line x1="{PAD}" y1="{H}" x2="{W}" y2="{H}" '
             f'stroke="#999"/>']
    for i in range(buckets):
        y = float(H)
        for gi, group in enumerate(groups):
            tokens = cells.get(i, {}).get(group, 0)
            if not tokens:
                continue
            h = tokens / peak * (H - 14)
            y -= h
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(since + i * bucket))
            parts.append(f'<rect x="{PAD + i * bw + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" '
                         f'height="{h:.1f}" fill="{color(gi)}" data-group="{escape(group)}">'
                         f'<title>{escape(group)}: {tokens} tokens ({when} UTC)</title></rect>')
    start_words = time.strftime("%m-%d %H:%M", time.gmtime(since))
    parts.append(f'<text x="{PAD}" y="{H + 16}" class="axis">{start_words} UTC</text>'
                 f'<text x="{W}" y="{H + 16}" text-anchor="end" class="axis">now</text></svg>')
    return "".join(parts), groups
