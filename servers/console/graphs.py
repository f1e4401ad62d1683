"""Pictures the console draws on the server: an entity's dependency graph and a budget-burn chart.

Both are plain SVG text, built from figures the platform returned, so a page
needs no script to show them and the Content-Security-Policy stays strict.
Every piece of text that reaches the SVG (entity names, group labels, titles)
is escaped here: names come from users, and the SVG is inserted into the page
as markup.

The graph is layered by depth below the entity (the longest path from it, so
every edge points down), ordered within a layer by the mean position of each
node's parents (which keeps a redundancy group's members side by side), and
coloured by composite availability. A k-of-n dependency's edges are dashed and
labelled once, for example "2 of 3 (regions)".

>>> svg = dependency_graph_svg(
...     GraphNode("web", 0.998),
...     [GraphNode("db", 0.9995)],
...     [GraphEdge("web", "db")],
... )
>>> svg.startswith("<svg") and 'data-name="db"' in svg
True
>>> group_label(2, 3, "regions")
'2 of 3 (regions)'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from servers.console import formats

#: Composite availability at or above which a node is drawn "good", then "fair"; below, "poor".
GOOD_AT = 0.999
FAIR_AT = 0.99
#: Fill and stroke of each band.
BAND_COLOURS = {
    "good": ("#e3f4e1", "#2e7d32"),
    "fair": ("#fff4d6", "#b7791f"),
    "poor": ("#fde2e0", "#a3261b"),
}
NODE_WIDTH = 176
NODE_HEIGHT = 46
COLUMN = NODE_WIDTH + 28
ROW = NODE_HEIGHT + 74
MARGIN = 16
LEGEND_HEIGHT = 30
#: Characters of a name shown in a node (the full name is in its tooltip).
NAME_CHARS = 22
#: Characters of a group label shown on the graph.
GROUP_CHARS = 40


@dataclass(frozen=True)
class GraphNode:
    """An entity on the graph and its composite availability (0 to 1)."""

    name: str
    availability: float


@dataclass(frozen=True)
class GraphEdge:
    """A dependency edge: `source` needs `target`, one of `of` of which `required` must be up."""

    source: str
    target: str
    required: int = 1
    of: int = 1
    group: str = ""


@dataclass(frozen=True)
class Placed:
    """Where the layout puts a node: its layer (depth) and its centre."""

    layer: int
    x: float
    y: float


def availability_band(availability: float) -> str:
    """The colour band of an availability: "good", "fair" or "poor".

    >>> [availability_band(a) for a in (0.9999, 0.995, 0.9)]
    ['good', 'fair', 'poor']
    """
    if not math.isfinite(availability) or availability < FAIR_AT:
        return "poor"
    return "good" if availability >= GOOD_AT else "fair"


def group_label(required: int, of: int, group: str = "") -> str:
    """How a k-of-n dependency reads: "2 of 3 (regions)", or "1 of 2" without a group name."""
    label = f"{max(required, 1)} of {of}"
    group = group.strip()
    if group:
        label += f" ({_shortened(group, GROUP_CHARS)})"
    return label


def percent(value: float, digits: int = 3) -> str:
    """A share as a percentage, e.g. 0.99951 → "99.951%".

    >>> percent(0.999), percent(0.5, 0)
    ('99.900%', '50%')
    """
    if not math.isfinite(value):
        return formats.BLANK
    return f"{value * 100:.{digits}f}%"


def depths(root: str, edges: Sequence[GraphEdge]) -> dict[str, int]:
    """Each node's depth below `root`: the longest path from it.

    Nodes the root does not reach get depth 1. A cycle (the catalog refuses
    them) cannot make this loop: no depth grows past the number of nodes.
    """
    names = {root} | {e.source for e in edges} | {e.target for e in edges}
    depth = {root: 0}
    ordered = sorted(edges, key=lambda e: (e.source, e.target))
    for _ in range(len(names)):
        changed = False
        for edge in ordered:
            if edge.source in depth and edge.target != root:
                below = depth[edge.source] + 1
                if below > depth.get(edge.target, -1) and below < len(names):
                    depth[edge.target] = below
                    changed = True
        if not changed:
            break
    for name in names - depth.keys():
        depth[name] = 1
    return depth


def layout(root: str, names: Iterable[str], edges: Sequence[GraphEdge]) -> dict[str, Placed]:
    """Where each node goes: layered by depth, each layer centred, parents' order kept."""
    depth = depths(root, edges)
    for name in names:
        depth.setdefault(name, 0 if name == root else 1)
    layers: dict[int, list[str]] = {}
    for name, layer in depth.items():
        layers.setdefault(layer, []).append(name)
    parents: dict[str, list[str]] = {}
    groups: dict[str, str] = {}
    for edge in edges:
        parents.setdefault(edge.target, []).append(edge.source)
        if edge.of > 1:
            groups.setdefault(edge.target, f"{edge.source}\0{edge.group}\0{edge.of}")
    widest = max(len(members) for members in layers.values())
    centre = MARGIN + widest * COLUMN / 2
    placed: dict[str, Placed] = {}

    def barycentre(name: str) -> float:
        xs = [placed[p].x for p in parents.get(name, ()) if p in placed]
        return sum(xs) / len(xs) if xs else centre

    for layer in sorted(layers):
        members = sorted(
            layers[layer], key=lambda name: (barycentre(name), groups.get(name, ""), name)
        )
        first = centre - (len(members) - 1) * COLUMN / 2
        for index, name in enumerate(members):
            y = MARGIN + layer * ROW + NODE_HEIGHT / 2
            placed[name] = Placed(layer, first + index * COLUMN, y)
    return placed


def dependency_graph_svg(
    root: GraphNode,
    dependencies: Sequence[GraphNode],
    edges: Sequence[GraphEdge],
    *,
    title: str = "",
    href: Callable[[str], str] | None = None,
) -> Markup:
    """An entity's dependency graph as SVG markup.

    Args:
        root: The entity, with its composite availability.
        dependencies: Every entity it depends on, transitively, with theirs.
        edges: The dependency edges between them.
        title: The picture's accessible title (defaults to naming the root).
        href: Where a node links to, given its name (no links without it).
    """
    nodes: dict[str, GraphNode] = {node.name: node for node in dependencies}
    nodes[root.name] = root
    placed = layout(root.name, nodes, edges)
    width = max(p.x for p in placed.values()) + NODE_WIDTH / 2 + MARGIN
    width = max(width, 2 * MARGIN + 3 * 110 + 240)  # room for the legend
    height = max(p.y for p in placed.values()) + NODE_HEIGHT / 2 + MARGIN + LEGEND_HEIGHT
    title = title or f"Dependencies of {root.name}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dependency-graph" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="dependency-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#5b6472"/></marker></defs>',
    ]
    parts += _edges(edges, placed)
    parts += _group_labels(edges, placed)
    for name in sorted(placed, key=lambda n: (placed[n].layer, placed[n].x)):
        node = nodes.get(name, GraphNode(name, math.nan))
        parts.append(_node(node, placed[name], is_root=name == root.name, href=href))
    parts.append(_legend(height - LEGEND_HEIGHT + 6))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def _edges(edges: Sequence[GraphEdge], placed: Mapping[str, Placed]) -> list[str]:
    drawn = []
    for edge in sorted(edges, key=lambda e: (e.source, e.target)):
        if edge.source not in placed or edge.target not in placed:
            continue
        start, end = placed[edge.source], placed[edge.target]
        x1, y1 = start.x, start.y + NODE_HEIGHT / 2
        x2, y2 = end.x, end.y - NODE_HEIGHT / 2
        bend = (y2 - y1) / 2
        kind = "edge group" if edge.of > 1 else "edge"
        dashes = ' stroke-dasharray="5 4"' if edge.of > 1 else ""
        drawn.append(
            f'<path class="{kind}" data-source="{escape(edge.source)}" '
            f'data-target="{escape(edge.target)}" '
            f'd="M {x1:.1f} {y1:.1f} C {x1:.1f} {y1 + bend:.1f}, {x2:.1f} {y2 - bend:.1f}, '
            f'{x2:.1f} {y2:.1f}" fill="none" stroke="#5b6472" stroke-width="1.4"{dashes} '
            f'marker-end="url(#dependency-arrow)"/>'
        )
    return drawn


def _group_labels(edges: Sequence[GraphEdge], placed: Mapping[str, Placed]) -> list[str]:
    groups: dict[tuple[str, int, int, str], list[Placed]] = {}
    for edge in edges:
        if edge.of > 1 and edge.source in placed and edge.target in placed:
            key = (edge.source, edge.required, edge.of, edge.group)
            groups.setdefault(key, []).append(placed[edge.target])
    labels = []
    for (source, required, of, group), targets in sorted(groups.items()):
        text = group_label(required, of, group)
        start = placed[source]
        middle = sum(t.x for t in targets) / len(targets)
        x = (start.x + middle) / 2
        y = start.y + NODE_HEIGHT / 2 + 24
        width = 7 * len(text) + 12
        labels.append(
            f'<g class="group-label" data-source="{escape(source)}">'
            f'<rect x="{x - width / 2:.1f}" y="{y - 10:.1f}" width="{width}" height="18" rx="9" '
            f'fill="#ffffff" stroke="#5b6472" stroke-dasharray="3 2"/>'
            f'<text x="{x:.1f}" y="{y + 3:.1f}" text-anchor="middle" font-size="11" '
            f'fill="#1d2430">{escape(text)}</text></g>'
        )
    return labels


def _node(
    node: GraphNode, where: Placed, *, is_root: bool, href: Callable[[str], str] | None
) -> str:
    band = availability_band(node.availability)
    fill, stroke = BAND_COLOURS[band]
    left, top = where.x - NODE_WIDTH / 2, where.y - NODE_HEIGHT / 2
    figure = percent(node.availability)
    shape = (
        f'<g class="node {band}{" root" if is_root else ""}" data-name="{escape(node.name)}" '
        f'data-availability="{node.availability:.6f}">'
        f"<title>{escape(node.name)}: {escape(figure)} composite availability</title>"
        f'<rect x="{left:.1f}" y="{top:.1f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="{2.5 if is_root else 1.2}"/>'
        f'<text x="{where.x:.1f}" y="{where.y - 4:.1f}" text-anchor="middle" font-size="13" '
        f'font-weight="600" fill="#1d2430">{escape(_shortened(node.name, NAME_CHARS))}</text>'
        f'<text x="{where.x:.1f}" y="{where.y + 13:.1f}" text-anchor="middle" font-size="11" '
        f'fill="#1d2430">{escape(figure)}</text></g>'
    )
    if href is None or is_root:
        return shape
    return f'<a href="{escape(href(node.name))}">{shape}</a>'


def _legend(y: float) -> str:
    items = [("good", f"≥ {percent(GOOD_AT, 1)}"), ("fair", f"≥ {percent(FAIR_AT, 0)}")]
    items.append(("poor", f"< {percent(FAIR_AT, 0)}"))
    parts = ['<g class="legend">']
    x = MARGIN
    for band, text in items:
        fill, stroke = BAND_COLOURS[band]
        parts.append(
            f'<rect x="{x}" y="{y:.1f}" width="14" height="14" rx="3" fill="{fill}" '
            f'stroke="{stroke}"/><text x="{x + 20}" y="{y + 11:.1f}" font-size="11" '
            f'fill="#5b6472">{escape(text)}</text>'
        )
        x += 110
    parts.append(
        f'<text x="{x}" y="{y + 11:.1f}" font-size="11" fill="#5b6472">'
        "composite availability; dashed: k of n</text></g>"
    )
    return "".join(parts)


CHART_WIDTH = 600
CHART_HEIGHT = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 16, 14, 30


def cumulative(daily: Sequence[float]) -> list[float]:
    """Running totals of per-day shares (non-finite or negative days count as nothing).

    >>> cumulative([0.1, 0.2, 0.0])
    [0.1, 0.30000000000000004, 0.30000000000000004]
    """
    total, running = 0.0, []
    for value in daily:
        total += value if math.isfinite(value) and value > 0 else 0.0
        running.append(total)
    return running


def burn_chart_svg(
    daily_consumed: Sequence[float], window_days: float, *, title: str = "Error budget burn"
) -> Markup:
    """Cumulative budget consumed per day across the window, against the even-spend line.

    Args:
        daily_consumed: Share of the window's budget spent each day, oldest
            first (GetSloStatus's `daily_consumed`).
        window_days: The window's length in days (the even-spend line reaches
            100% at its end).
        title: The chart's accessible title.
    """
    running = cumulative(daily_consumed)
    days = max(float(len(running)), window_days if math.isfinite(window_days) else 0.0, 1.0)
    top = max([1.0, *running]) * 1.1
    step = 0.25 if top <= 1.5 else 0.5 if top <= 3 else math.ceil(top / 5)
    top = math.ceil(top / step) * step
    inner_w = CHART_WIDTH - _LEFT - _RIGHT
    inner_h = CHART_HEIGHT - _TOP - _BOTTOM

    def at(day: float, share: float) -> str:
        return f"{_LEFT + inner_w * day / days:.1f},{_TOP + inner_h * (1 - share / top):.1f}"

    spent = running[-1] if running else 0.0
    description = (
        f"{percent(spent, 1)} of the budget consumed over {len(running)} days of a "
        f"{days:g}-day window; spending evenly would reach 100% at its end."
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="burn-chart" role="img" '
        f'width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>",
    ]
    tick = 0.0
    while tick <= top + 1e-9:
        y = at(0, tick).split(",")[1]
        strong = abs(tick - 1.0) < 1e-9
        parts.append(
            f'<line x1="{_LEFT}" x2="{CHART_WIDTH - _RIGHT}" y1="{y}" y2="{y}" '
            f'stroke="{"#a3261b" if strong else "#d8dde5"}" stroke-width="1"/>'
            f'<text x="{_LEFT - 6}" y="{float(y) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#5b6472">{percent(tick, 0)}</text>'
        )
        tick += step
    bottom = CHART_HEIGHT - _BOTTOM + 16
    parts.append(
        f'<text x="{_LEFT}" y="{bottom}" font-size="11" fill="#5b6472">window start</text>'
        f'<text x="{CHART_WIDTH - _RIGHT}" y="{bottom}" text-anchor="end" font-size="11" '
        f'fill="#5b6472">window end</text>'
    )
    parts.append(
        f'<polyline class="even-spend" points="{at(0, 0)} {at(days, 1.0)}" fill="none" '
        f'stroke="#5b6472" stroke-width="1.5" stroke-dasharray="6 4"/>'
    )
    if running:
        points = " ".join([at(0, 0), *(at(day + 1, share) for day, share in enumerate(running))])
        colour = "#a3261b" if spent >= 1.0 else "#1f5fbf"
        parts.append(
            f'<polyline class="consumed" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="2.2"/>'
        )
    else:
        parts.append(
            f'<text x="{CHART_WIDTH / 2}" y="{CHART_HEIGHT / 2}" text-anchor="middle" '
            f'font-size="12" fill="#5b6472">No events recorded in the window.</text>'
        )
    legend_y = _TOP + 12
    colour = "#a3261b" if spent >= 1.0 else "#1f5fbf"
    parts.append(
        f'<g class="legend"><line x1="{_LEFT + 10}" x2="{_LEFT + 34}" y1="{legend_y - 4}" '
        f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2.2"/>'
        f'<text x="{_LEFT + 40}" y="{legend_y}" font-size="11" fill="#1d2430">consumed</text>'
        f'<line x1="{_LEFT + 110}" x2="{_LEFT + 134}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
        f'stroke="#5b6472" stroke-dasharray="6 4" stroke-width="1.5"/>'
        f'<text x="{_LEFT + 140}" y="{legend_y}" font-size="11" fill="#1d2430">even spend</text>'
        "</g></svg>"
    )
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
