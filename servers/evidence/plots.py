"""The bundle's plots, as PNG and SVG, from the acceptance packs' raw results.

Rendered headless (Agg) and reproducibly: the same data gives the same bytes
(SVG ids salted with a constant, no creation dates in either format).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: The analytics packs' latency SLO (p95), in milliseconds.
ANALYTICS_P95_MS = 450.0
#: The share of requests that may exceed it (the SLO's error budget: p95).
LATENCY_BUDGET = 0.05
#: Requests per burn-rate window.
BURN_WINDOW = 20
#: The reconciliation drift bound per day, in minor units.
DRIFT_BOUND_MINOR = 1

_STYLE: dict[Any, Any] = {
    "svg.hashsalt": "intelgraph-evidence",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
}


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save(figure: Figure, out: Path, name: str) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out / f"{name}.png", format="png", metadata={"Software": None})
    figure.savefig(out / f"{name}.svg", format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    return [f"{name}.png", f"{name}.svg"]


def latency_distributions(latencies: Mapping[str, Sequence[float]], axes: Axes) -> None:
    """Each analytics pack's latencies as a box plot, against the 450 ms p95 SLO."""
    names = sorted(latencies)
    axes.boxplot(
        [list(latencies[name]) for name in names], orientation="horizontal", showfliers=True
    )
    axes.set_yticks(range(1, len(names) + 1), [name.removeprefix("analytics.") for name in names])
    axes.axvline(ANALYTICS_P95_MS, color="tab:red", linestyle="--", label="SLO p95 450 ms")
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_title("Analytics pack latency")
    axes.legend(loc="lower right")


def burn_rates(latencies: Mapping[str, Sequence[float]]) -> list[float]:
    """The latency SLO's burn rate per window of `BURN_WINDOW` requests (all packs in turn).

    The burn rate is the share of a window's requests slower than the SLO divided by
    the budget (5%): 1 spends the budget exactly as fast as it accrues.

    >>> burn_rates({"a": [10.0] * 19 + [500.0]})
    [1.0]
    """
    ordered = [value for name in sorted(latencies) for value in latencies[name]]
    rates = []
    for start in range(0, len(ordered) - BURN_WINDOW + 1, BURN_WINDOW):
        window = ordered[start : start + BURN_WINDOW]
        slow = sum(1 for value in window if value > ANALYTICS_P95_MS)
        rates.append(round(slow / len(window) / LATENCY_BUDGET, 6))
    return rates


def burn_rate_chart(latencies: Mapping[str, Sequence[float]], axes: Axes) -> None:
    """The latency SLO's burn rate per window, against 1 (the budget's pace)."""
    rates = burn_rates(latencies)
    axes.plot(range(1, len(rates) + 1), rates, marker=".", label="burn rate")
    axes.axhline(1.0, color="tab:orange", linestyle="--", label="1x (budget pace)")
    axes.axhline(14.4, color="tab:red", linestyle=":", label="14.4x (page)")
    axes.set_ylim(bottom=0, top=max(16.0, *rates) if rates else 16.0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(f"window of {BURN_WINDOW} requests")
    axes.set_ylabel("burn rate")
    axes.set_title("Analytics latency SLO burn rate")
    axes.legend(loc="upper right")


def coalescing_chart(coalescing: Mapping[str, Any], axes: Axes) -> None:
    """Origin calls of one burst with and without request coalescing."""
    without = float(coalescing["origin_hits_without"])
    with_ = float(coalescing["origin_hits_with"])
    bars = axes.bar(["without coalescing", "with coalescing"], [without, with_])
    bars[0].set_color("tab:gray")
    axes.bar_label(bars, fmt="%d")
    axes.set_ylabel("origin calls")
    axes.set_title(f"Origin calls for {int(coalescing['requests'])} identical requests")


def drift_chart(reports: Sequence[Mapping[str, Any]], axes: Axes) -> None:
    """Reconciliation drift per day, against the $0.01 bound."""
    days = [str(report["day"]) for report in reports]
    drift = [int(report["drift_minor_units"]) for report in reports]
    axes.bar(days, drift, color="tab:blue")
    for bound in (DRIFT_BOUND_MINOR, -DRIFT_BOUND_MINOR):
        axes.axhline(bound, color="tab:red", linestyle="--")
    reach = max([2 * DRIFT_BOUND_MINOR + 1, *(abs(value) + 1 for value in drift)])
    axes.set_ylim(-reach, reach)  # a large drift is drawn to its size, never clipped
    axes.set_ylabel("drift (minor units)")
    axes.set_title("Billing reconciliation drift per day (bound ±$0.01)")


def render_plots(raw: Path, out: Path) -> dict[str, list[str]]:
    """Every plot the raw results allow, into `out`; plot name → its files.

    Args:
        raw: The acceptance packs' raw results (`<lane>/<name>.json`).
        out: Where the PNG and SVG files go.
    """
    plots: dict[str, list[str]] = {}
    latencies = _load(raw / "analytics" / "latencies.json")
    coalescing = _load(raw / "edge" / "coalescing.json")
    drift = _load(raw / "billing" / "reconciliation.json")
    wanted: list[tuple[str, bool, Callable[[Axes], None], tuple[float, float]]] = [
        (
            "analytics-latency",
            isinstance(latencies, dict) and any(latencies.values()),
            lambda axes: latency_distributions(latencies, axes),
            (7.0, 3.6),
        ),
        (
            "analytics-burn-rate",
            isinstance(latencies, dict) and any(latencies.values()),
            lambda axes: burn_rate_chart(latencies, axes),
            (7.0, 3.0),
        ),
        (
            "edge-coalescing",
            isinstance(coalescing, dict) and "origin_hits_with" in coalescing,
            lambda axes: coalescing_chart(coalescing, axes),
            (5.0, 3.2),
        ),
        (
            "billing-drift",
            isinstance(drift, list) and bool(drift),
            lambda axes: drift_chart(drift, axes),
            (6.0, 3.0),
        ),
    ]
    with mpl.rc_context(_STYLE):
        for name, available, draw, size in wanted:
            if not available:
                continue
            figure, axes = plt.subplots(figsize=size)
            try:
                draw(axes)
            except (KeyError, TypeError, ValueError):  # raw results of another shape: no plot
                plt.close(figure)
                continue
            plots[name] = _save(figure, out, name)
    return plots
