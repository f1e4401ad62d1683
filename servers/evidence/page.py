"""The bundle's `index.html`: one page linking everything, readable offline (no remote asset)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

#: Lane titles, as the seed's acceptance packs name them.
TITLES = {
    "billing": "Billing GA",
    "edge": "Edge cache guardrails",
    "rag": "RAG lineage and proofs",
    "catalog": "Catalog v1.0",
    "access": "Access / JIT",
    "analytics": "Analytics",
}
#: What a raw result is, when its name says (shown beside its link).
ABOUT = {
    "billing/rollout": "rollout history: who moved which tenant when",
    "billing/invoice": "signed invoice",
    "billing/credit_note": "signed credit note",
    "billing/refund": "refund",
    "billing/verification": "signature verification of the documents",
    "billing/tax": "tax sandbox calculation",
    "billing/reconciliation": "reconciliation reports (drift per day)",
    "edge/coverage": "mutation graph and coverage",
    "edge/coalescing": "origin calls with and without coalescing",
    "edge/leaks": "cross-tenant leak fuzz",
    "rag/manifest": "signed proof manifest (DSSE)",
    "rag/proofs": "chunk inclusion proofs and their verification",
    "rag/jwks": "manifest signing keys",
    "rag/pii": "PII planted and looked for in the outputs",
    "rag/upload": "resumable upload cut and resumed",
    "access/audit": "JIT approvals and revocations from the audit log (chain verified)",
    "analytics/latencies": "every pack call's latency",
    "analytics/sampling": "sampling and hints",
}
#: Plot titles by file stem.
PLOT_TITLES = {
    "analytics-latency": "Analytics pack latency distributions against the 450 ms p95 SLO",
    "analytics-burn-rate": "Analytics latency SLO burn rate per window of requests",
    "edge-coalescing": "Origin calls with and without request coalescing",
    "billing-drift": "Billing reconciliation drift per day",
}
#: Load figures shown, in order, when the load results carry them.
LOAD_FIGURES = (
    "replicas",
    "calls_per_s",
    "error_rate",
    "graphql_p99_ms",
    "analytics_p95_ms",
    "capacity_per_s",
    "scale_ratio",
    "loadgen_cpu",
    "slo_ok",
)

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("servers.evidence", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def _lanes(out: Path, results: Mapping[str, Any]) -> list[dict[str, Any]]:
    lanes = []
    for lane in results["lanes"]:
        checks = [check for check in results["checks"] if check["lane"] == lane]
        raw_dir = out / "acceptance" / "raw" / lane
        raw = (
            [
                {
                    "name": path.name,
                    "path": path.relative_to(out).as_posix(),
                    "about": ABOUT.get(f"{lane}/{path.stem}", ""),
                }
                for path in sorted(raw_dir.glob("*"))
                if path.is_file()
            ]
            if raw_dir.is_dir()
            else []
        )
        lanes.append(
            {
                "name": lane,
                "title": TITLES.get(lane, lane),
                "checks": checks,
                "failed": sum(1 for check in checks if not check["passed"]),
                "seconds": results.get("seconds", {}).get(lane, "?"),
                "raw": raw,
            }
        )
    return lanes


def _included(out: Path, note: Mapping[str, Any]) -> Any:
    if not note.get("included"):
        return None
    try:
        return json.loads((out / note["file"]).read_text())
    except (OSError, ValueError):
        return None


def _load(out: Path, collection: Mapping[str, Any]) -> dict[str, Any] | None:
    results = _included(out, collection["load"])
    if not isinstance(results, dict):
        return None
    figures = [(key, results[key]) for key in LOAD_FIGURES if key in results]
    return {"file": collection["load"]["file"], "figures": figures}


def _chaos(out: Path, collection: Mapping[str, Any]) -> dict[str, Any] | None:
    rows = _included(out, collection["chaos"])
    if not isinstance(rows, list):
        return None
    return {"file": collection["chaos"]["file"], "rows": rows}


def write_index(
    out: Path,
    collection: Mapping[str, Any],
    results: Mapping[str, Any],
    plots: Mapping[str, list[str]],
    *,
    version: str,
) -> None:
    """Write `out/index.html` from the collection, the packs' results and the plots drawn."""
    checks = results["checks"]
    shots = collection["screenshots"]
    page = _ENVIRONMENT.get_template("index.html").render(
        version=version,
        collection=collection,
        total=len(checks),
        failed=sum(1 for check in checks if not check["passed"]),
        lanes=_lanes(out, results),
        plots=[
            {
                "title": PLOT_TITLES.get(name, name),
                "png": f"plots/{files[0]}",
                "svg": f"plots/{files[1]}",
            }
            for name, files in sorted(plots.items())
        ],
        screenshots=[
            {"name": name, "path": f"screenshots/{file}"}
            for name, file in sorted(shots["taken"].items())
        ],
        not_taken=sorted(shots["not_taken"].items()),
        load=_load(out, collection),
        chaos=_chaos(out, collection),
        files=[
            {"path": path.relative_to(out).as_posix(), "size": path.stat().st_size}
            for path in sorted(out.rglob("*"))
            if path.is_file()
        ],
    )
    (out / "index.html").write_text(page)
