"""The console's server-drawn SVG: the dependency graph's layout and labels, the burn chart."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from intelgraph.sdk.money import Money

from servers.console import formats
from servers.console.graphs import (
    GraphEdge,
    GraphNode,
    availability_band,
    burn_chart_svg,
    cumulative,
    dependency_graph_svg,
    depths,
    group_label,
    layout,
)

SVG = "{http://www.w3.org/2000/svg}"


def parsed(svg: str) -> ET.Element:
    """The SVG as XML: it must be well formed, whatever names it holds."""
    return ET.fromstring(svg)


def nodes_of(svg: str) -> dict[str, ET.Element]:
    return {
        g.attrib["data-name"]: g for g in parsed(svg).iter(f"{SVG}g") if "data-name" in g.attrib
    }


def texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in parsed(svg).iter(f"{SVG}text")]


DIAMOND = [
    GraphEdge("web", "api-a"),
    GraphEdge("web", "api-b"),
    GraphEdge("api-a", "db"),
    GraphEdge("api-b", "db"),
]


def test_a_diamond_is_layered_by_depth_with_the_shared_node_centred_below() -> None:
    placed = layout("web", ["web", "api-a", "api-b", "db"], DIAMOND)
    assert {name: where.layer for name, where in placed.items()} == {
        "web": 0,
        "api-a": 1,
        "api-b": 1,
        "db": 2,
    }
    assert placed["api-a"].y == placed["api-b"].y < placed["db"].y
    assert placed["api-a"].x < placed["api-b"].x  # by name when parents tie
    assert placed["db"].x == pytest.approx((placed["api-a"].x + placed["api-b"].x) / 2)
    assert placed["web"].x == pytest.approx(placed["db"].x)
    svg = dependency_graph_svg(
        GraphNode("web", 0.998),
        [GraphNode("api-a", 0.999), GraphNode("api-b", 0.9995), GraphNode("db", 0.9999)],
        DIAMOND,
    )
    assert set(nodes_of(svg)) == {"web", "api-a", "api-b", "db"}
    edges = [p for p in parsed(svg).iter(f"{SVG}path") if "edge" in p.attrib.get("class", "")]
    assert {(e.attrib["data-source"], e.attrib["data-target"]) for e in edges} == {
        (edge.source, edge.target) for edge in DIAMOND
    }


def test_depth_is_the_longest_path_so_every_edge_points_down() -> None:
    edges = [GraphEdge("web", "api"), GraphEdge("api", "db"), GraphEdge("web", "db")]
    assert depths("web", edges) == {"web": 0, "api": 1, "db": 2}
    placed = layout("web", ["web", "api", "db"], edges)
    assert all(placed[e.target].y > placed[e.source].y for e in edges)


def test_a_cycle_cannot_make_the_layout_loop() -> None:
    edges = [GraphEdge("a", "b"), GraphEdge("b", "c"), GraphEdge("c", "b")]
    found = depths("a", edges)
    assert set(found) == {"a", "b", "c"}
    assert max(found.values()) < 3


def test_k_of_n_groups_are_dashed_labelled_once_and_kept_together() -> None:
    edges = [
        GraphEdge("api", "db"),
        *(GraphEdge("api", f"region-{n}", 2, 3, "regions") for n in "abc"),
        GraphEdge("api", "cache-a", 1, 2),
        GraphEdge("api", "cache-b", 1, 2),
    ]
    nodes = [GraphNode(e.target, 0.99) for e in edges]
    svg = dependency_graph_svg(GraphNode("api", 0.995), nodes, edges)
    labels = texts(svg)
    assert labels.count("2 of 3 (regions)") == 1
    assert labels.count("1 of 2") == 1
    dashed = [
        p.attrib["data-target"]
        for p in parsed(svg).iter(f"{SVG}path")
        if p.attrib.get("class") == "edge group"
    ]
    assert sorted(dashed) == ["cache-a", "cache-b", "region-a", "region-b", "region-c"]
    plain = [p for p in parsed(svg).iter(f"{SVG}path") if p.attrib.get("class") == "edge"]
    assert [p.attrib["data-target"] for p in plain] == ["db"]
    assert "stroke-dasharray" in ET.tostring(parsed(svg)).decode()
    placed = layout("api", [n.name for n in nodes], edges)
    order = sorted((n.name for n in nodes), key=lambda name: placed[name].x)
    regions = [order.index(f"region-{n}") for n in "abc"]
    assert regions == list(range(regions[0], regions[0] + 3))  # side by side
    assert group_label(0, 2) == "1 of 2"  # 0 means 1, as in the contract
    assert group_label(2, 3, "  ") == "2 of 3"


def test_nodes_are_coloured_by_composite_availability() -> None:
    assert [availability_band(a) for a in (0.9999, 0.999, 0.995, 0.99, 0.98, math.nan)] == [
        "good",
        "good",
        "fair",
        "fair",
        "poor",
        "poor",
    ]
    svg = dependency_graph_svg(
        GraphNode("web", 0.95), [GraphNode("db", 0.9999)], [GraphEdge("web", "db")]
    )
    classes = {name: g.attrib["class"] for name, g in nodes_of(svg).items()}
    assert classes == {"web": "node poor root", "db": "node good"}
    assert "95.000%" in texts(svg)


HOSTILE = '"><script>alert(1)</script><svg onload="x'


def test_hostile_text_is_escaped_everywhere_it_lands() -> None:
    root = HOSTILE + "-root"
    edges = [GraphEdge(root, HOSTILE, 1, 2, HOSTILE), GraphEdge(root, "db", 1, 2, HOSTILE)]
    svg = dependency_graph_svg(
        GraphNode(root, 0.99),
        [GraphNode(HOSTILE, 0.9), GraphNode("db", 0.9)],
        edges,
        title=f"<script>{HOSTILE}</script>",
        href=lambda name: f"/console/catalog/{name}",
    )
    assert "<script" not in svg
    tree = parsed(svg)  # still well formed
    elements = list(tree.iter())
    assert not [e for e in elements if any(a.startswith("on") for a in e.attrib)]
    assert {e.tag.removeprefix(SVG) for e in elements} <= {
        "svg",
        "title",
        "defs",
        "marker",
        "path",
        "g",
        "rect",
        "text",
        "a",
    }
    assert set(nodes_of(svg)) == {root, HOSTILE, "db"}  # the names survive, as text
    assert f"1 of 2 ({HOSTILE[:39]}…)" in texts(svg)
    links = [a.attrib["href"] for a in tree.iter(f"{SVG}a")]
    assert f"/console/catalog/{HOSTILE}" in links
    chart = burn_chart_svg([0.1], 30, title=HOSTILE)
    assert "<script" not in chart
    assert parsed(chart).find(f"{SVG}title") is not None


def test_an_entity_without_dependencies_is_one_node_and_no_edge() -> None:
    svg = dependency_graph_svg(GraphNode("lonely", 0.9995), [], [])
    assert list(nodes_of(svg)) == ["lonely"]
    assert not [p for p in parsed(svg).iter(f"{SVG}path") if "edge" in p.attrib.get("class", "")]
    width = float(parsed(svg).attrib["width"])
    assert width > 0


def test_the_burn_chart_plots_the_running_total_against_even_spend() -> None:
    assert cumulative([0.1, math.nan, -1.0, 0.2]) == pytest.approx([0.1, 0.1, 0.1, 0.3])
    chart = parsed(burn_chart_svg([0.1, 0.2, 0.05], 30))
    lines = {p.attrib["class"]: p.attrib["points"] for p in chart.iter(f"{SVG}polyline")}
    consumed = [tuple(map(float, point.split(","))) for point in lines["consumed"].split()]
    assert len(consumed) == 4  # from day 0, then one point per day
    assert [x for x, _ in consumed] == sorted(x for x, _ in consumed)
    assert [y for _, y in consumed] == sorted((y for _, y in consumed), reverse=True)
    even = [tuple(map(float, point.split(","))) for point in lines["even-spend"].split()]
    assert even[0][1] == consumed[0][1]  # both start at nothing spent
    assert "window end" in texts(burn_chart_svg([0.1], 30))
    description = "".join(chart.find(f"{SVG}desc").itertext())  # type: ignore[union-attr]
    assert "35.0% of the budget consumed over 3 days" in description


def test_an_overspent_budget_stretches_the_axis_and_an_empty_window_says_so() -> None:
    over = burn_chart_svg([0.9, 0.9], 7)
    assert "150%" in texts(over) or "200%" in texts(over)
    assert 'stroke="#a3261b"' in over
    empty = burn_chart_svg([], 30)
    assert "No events recorded in the window." in texts(empty)
    assert not [p for p in parsed(empty).iter(f"{SVG}polyline") if p.attrib["class"] == "consumed"]


def test_figures_are_written_for_people() -> None:
    assert formats.duration(43.2 * 60) == "43 min 12 s"
    assert formats.duration(3 * 3600 + 5, parts=3) == "3 h 5 s"
    assert formats.duration(-90) == "\N{MINUS SIGN}1 min 30 s"
    assert formats.minutes(2592) == "43.2 min"
    assert formats.window(300) == "5m"
    assert formats.money(Money(minor_units=-250, currency_code="EUR")) == "-2.50 EUR"
    assert formats.number(math.inf) == formats.BLANK
