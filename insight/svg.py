"""Charts and the process map as inline SVG: no JavaScript, no CDN, no Graphviz.

A report a manager opens offline must carry its drawings inside. Bar charts are simple
enough to write directly; the process map uses a small layered (Sugiyama-style) layout:
activities are ordered by their mean place in the cases (those that mostly end cases
last), each is put one layer below
the deepest activity that flows into it (longest path over the forward edges), and
layers are reordered a few times by the barycentre of their neighbours to uncross
edges. Backward edges (loops, rework) are drawn as arcs on the side.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from html import escape

import numpy as np
import pandas as pd

from insight.format import days

_FLOAT = re.compile(r"-?\d+\.\d+")
PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030")


def bar_chart(labels: Sequence[str], values: Sequence[float], *, value_text:
              Callable[[float], str] = lambda v: f"{v:,.0f}", title: str = "",
              color: str = PALETTE[0], width: int = 640, notes: Sequence[str] | None = None
              ) -> str:
    """Horizontal bars, one per label, with the value written beside each bar."""
    values = [0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
              for v in values]
    if not values:
        return ""
    row, label_w, pad = 24, 230, 8
    top = 26 if title else 6
    height = top + row * len(values) + pad
    span = max(max(values), 0.0) or 1.0
    bar_w = width - label_w - 150
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">']
    if title:
        parts.append(f'<text x="4" y="16" class="title">{escape(title)}</text>')
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        w = max(bar_w * max(value, 0.0) / span, 1.0)
        text = value_text(value) + (f" — {notes[i]}" if notes and notes[i] else "")
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">'
                     f'{escape(_short(str(label), 34))}</text>'
                     f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
                     f'fill="{color}"><title>{escape(str(label))}: {escape(text)}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------ process map
NODE_W, NODE_H, GAP_X, GAP_Y = 190, 44, 40, 70


def layout(activities: pd.DataFrame, edges: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Node centres (x, y) of a layered layout; loops over activities (a few dozen)."""
    # activities that mostly end cases (a loss, a payment) go after the others: drawn by
    # mean position alone, an early loss would turn every later step's arrow to it upwards
    terminal = activities["ends"] >= 0.5 * activities["events"]
    order = activities.assign(_terminal=terminal).sort_values(
        ["_terminal", "mean_position", "events"], ascending=[True, True, False])
    names = order["activity"].tolist()
    rank = {a: i for i, a in enumerate(names)}
    forward = edges[[rank[s] < rank[t] for s, t in zip(edges["source"], edges["target"],
                                                          strict=True)]]
    preds: dict[str, list[str]] = {a: [] for a in names}
    for s, t in zip(forward["source"], forward["target"], strict=True):
        preds[t].append(s)
    layer: dict[str, int] = {}
    for a in names:  # in rank order, so every forward predecessor is placed already
        layer[a] = 1 + max((layer[p] for p in preds[a]), default=-1)
    layers: dict[int, list[str]] = {}
    for a in names:
        layers.setdefault(layer[a], []).append(a)
    neighbours: dict[str, list[str]] = {a: [] for a in names}
    for s, t in zip(edges["source"], edges["target"], strict=True):
        if s != t:
            neighbours[s].append(t)
            neighbours[t].append(s)
    for _ in range(4):  # barycentre sweeps
        for lv in sorted(layers):
            index = {a: i for l2 in layers.values() for i, a in enumerate(l2)}
            layers[lv].sort(key=lambda a: (np.mean([index[n] for n in neighbours[a]])
                                           if neighbours[a] else index[a]))
    widest = max(len(v) for v in layers.values())
    total_w = widest * (NODE_W + GAP_X)
    pos = {}
    for lv, members in layers.items():
        row_w = len(members) * (NODE_W + GAP_X)
        for i, a in enumerate(members):
            x = (total_w - row_w) / 2 + i * (NODE_W + GAP_X) + (NODE_W + GAP_X) / 2 + 60
            pos[a] = (x, 40 + lv * (NODE_H + GAP_Y) + NODE_H / 2)
    return pos


#: room left of the leftmost arc for its label ("1,234 · 12.3 days", anchored at its end)
LABEL_ROOM = 120.0


def _bend(source: tuple[float, float], target: tuple[float, float]) -> float:
    """How far left a backward arc between two nodes reaches: further for longer ones."""
    (x1, y1), (x2, y2) = source, target
    return min(x1, x2) - NODE_W / 2 - 30 - 0.15 * abs(y1 - y2)


def process_map_svg(activities: pd.DataFrame, edges: pd.DataFrame, starts: pd.DataFrame,
                    ends: pd.DataFrame, label_share: float = 0.0) -> str:
    """The directly-follows graph: node = activity (events), edge = cases and median time.

    Edge width grows with the number of events; edges followed by fewer than
    ``label_share`` of the map's transitions are drawn without a label."""
    if activities.empty:
        return ""
    pos = layout(activities, edges)
    # a backward arc bends out to the left and its label ends left of the bend: shift
    # the drawing right so neither leaves the picture
    leftmost = min((_bend(pos[s], pos[t]) for s, t in zip(edges["source"], edges["target"],
                                                           strict=True)
                    if s != t and pos[t][1] <= pos[s][1]), default=LABEL_ROOM)
    shift = max(0.0, LABEL_ROOM - leftmost)
    pos = {a: (x + shift, y) for a, (x, y) in pos.items()}
    width = max(x for x, _ in pos.values()) + NODE_W / 2 + 140
    height = max(y for _, y in pos.values()) + NODE_H / 2 + 60
    heaviest = max(int(edges["events"].max()) if len(edges) else 1, 1)
    total = max(int(edges["events"].sum()) if len(edges) else 1, 1)
    parts = [f'<svg class="map" role="img" viewBox="0 0 {width:.0f} {height:.0f}" '
             f'width="{width:.0f}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
             'fill="#4a5568"/></marker></defs>']
    wanted: list[tuple[float, float, str, str]] = []  # edge labels, placed after the nodes
    for e in edges.itertuples(index=False):  # one per edge of the map (tens to hundreds)
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        w = 1.0 + 5.0 * math.log1p(e.events) / math.log1p(heaviest)
        tip = (f"{e.source} → {e.target}: {e.events:,} times in {e.cases:,} cases; "
               f"median {days(e.median_days)}, P90 {days(e.p90_days)}")
        if e.source == e.target:
            path = (f"M{x1 + NODE_W / 2},{y1 - 8} C{x1 + NODE_W / 2 + 45},{y1 - 30} "
                    f"{x1 + NODE_W / 2 + 45},{y1 + 30} {x1 + NODE_W / 2},{y1 + 8}")
            lx, ly = x1 + NODE_W / 2 + 48, y1 + 4
        elif y2 > y1:
            path = (f"M{x1},{y1 + NODE_H / 2} C{x1},{(y1 + y2) / 2} {x2},{(y1 + y2) / 2} "
                    f"{x2},{y2 - NODE_H / 2}")
            lx, ly = (x1 + x2) / 2 + 4, (y1 + y2) / 2
        else:  # backward or sideways: an arc out to the left
            bend = _bend((x1, y1), (x2, y2))
            path = (f"M{x1 - NODE_W / 2},{y1} C{bend},{y1} {bend},{y2} {x2 - NODE_W / 2},{y2}")
            lx, ly = bend - 4, (y1 + y2) / 2
        path = _FLOAT.sub(lambda m: f"{float(m.group()):.1f}", path)
        color = "#c05621" if y2 <= y1 and e.source != e.target else "#4a5568"
        parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-opacity="0.7" '
                     f'stroke-width="{w:.1f}" marker-end="url(#arrow)">'
                     f'<title>{escape(tip)}</title></path>')
        if e.events / total >= label_share:
            anchor = "end" if (y2 <= y1 and e.source != e.target) else "start"
            wanted.append((lx, ly, anchor, f"{e.cases:,} · {days(e.median_days)}"))
    start_n = dict(zip(starts["activity"], starts["cases"], strict=True))
    end_n = dict(zip(ends["activity"], ends["cases"], strict=True))
    for a in activities.itertuples(index=False):
        x, y = pos[a.activity]
        # coloured where most of its cases start (or end) there: a few cases cut short
        # end at nearly every activity, and would colour every box
        ring = (" start" if start_n.get(a.activity, 0) >= 0.5 * a.cases else
                " end" if end_n.get(a.activity, 0) >= 0.5 * a.cases else "")
        tip = (f"{a.activity}: {a.events:,} events in {a.cases:,} cases; starts "
               f"{start_n.get(a.activity, 0):,}, ends {end_n.get(a.activity, 0):,}")
        parts.append(f'<g class="node{ring}"><rect x="{x - NODE_W / 2:.0f}" '
                     f'y="{y - NODE_H / 2:.0f}" width="{NODE_W}" height="{NODE_H}" rx="8"/>'
                     f'<text x="{x:.0f}" y="{y - 3:.0f}" text-anchor="middle">'
                     f'{escape(_short(str(a.activity), 26))}</text>'
                     f'<text class="count" x="{x:.0f}" y="{y + 13:.0f}" text-anchor="middle">'
                     f'{a.events:,} events</text><title>{escape(tip)}</title></g>')
    nodes = [(x - NODE_W / 2, y - NODE_H / 2, x + NODE_W / 2, y + NODE_H / 2)
             for x, y in pos.values()]
    for x, y, anchor, text in place_labels(wanted, nodes):
        parts.append(f'<text class="edge" x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}">'
                     f'{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


#: an edge label's size in the report's 11px font (a little wider than most glyphs)
LABEL_CHAR_W, LABEL_H = 6.3, 13.0
#: vertical moves tried, in order, when a label's own place is taken
_NUDGES = (0.0, 14.0, -14.0, 28.0, -28.0, 42.0, -42.0)


def label_box(x: float, y: float, anchor: str, text: str) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) an edge label drawn at (x, y) covers: text baseline at y."""
    width = LABEL_CHAR_W * len(text)
    x0 = x - width if anchor == "end" else x
    return x0, y - LABEL_H + 3, x0 + width, y + 3


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(wanted: list[tuple[float, float, str, str]],
                 taken: list[tuple[float, float, float, float]]
                 ) -> list[tuple[float, float, str, str]]:
    """Edge labels moved up or down until they cover no node and no label placed before
    them (the busiest edges come first); a label without room is left out, its figures
    stay in the edge's tooltip and the transitions table. Drawn over the nodes, a label
    hidden under a box or on another label would be unreadable."""
    taken = list(taken)
    placed = []
    for x, y, anchor, text in wanted:
        for dy in _NUDGES:
            box = label_box(x, y + dy, anchor, text)
            if not any(_overlaps(box, other) for other in taken):
                taken.append(box)
                placed.append((x, y + dy, anchor, text))
                break
    return placed
