"""Evidence a bundle is rendered from, made up but of the shapes `collect` writes."""

from __future__ import annotations

import json
from pathlib import Path


def _write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def sample_data(root: Path) -> Path:
    """Write collected evidence as `collect` leaves it (made up, of the real shapes) at `root`."""
    checks = [
        {
            "lane": "billing",
            "name": "reconciliation drift per day",
            "threshold": "≤ $0.01/day",
            "measured": "$0.00",
            "passed": True,
            "value": 0.0,
            "detail": "",
        },
        {
            "lane": "analytics",
            "name": "pack p95 latency",
            "threshold": "≤ 450 ms",
            "measured": "61.2 ms",
            "passed": True,
            "value": 61.2,
            "detail": "<script>alert(1)</script>",
        },
    ]
    _write(
        root / "acceptance" / "results.json",
        {
            "target": "ephemeral",
            "quick": True,
            "lanes": ["billing", "analytics"],
            "seconds": {"billing": 1.5, "analytics": 4.0},
            "checks": checks,
        },
    )
    raw = root / "acceptance" / "raw"
    _write(
        raw / "analytics" / "latencies.json",
        {
            "analytics.pagerank:v1": [12.0 + i % 7 for i in range(60)],
            "analytics.degree:v1": [9.5] * 40,
        },
    )
    _write(raw / "billing" / "reconciliation.json", [{"day": "2026-12-01", "drift_minor_units": 0}])
    _write(
        raw / "edge" / "coalescing.json",
        {"requests": 50, "origin_hits_with": 1, "origin_hits_without": 50, "operations": ["a"]},
    )
    (root / "screenshots").mkdir(parents=True)
    (root / "screenshots" / "catalog.png").write_bytes(b"\x89PNG not really")
    _write(
        root / "chaos" / "chaos.json",
        [
            {
                "case": "replica SIGKILL",
                "injected_at": 8.0,
                "detected_at": 8.1,
                "recovered_at": 12.0,
                "lost": 0,
                "duplicated": 0,
                "failed_calls": 0,
                "note": "",
            }
        ],
    )
    _write(
        root / "collection.json",
        {
            "target": "ephemeral",
            "lanes": ["billing", "analytics"],
            "quick": True,
            "passed": 2,
            "failed": 0,
            "screenshots": {"taken": {"catalog": "catalog.png"}, "not_taken": {"approvals": "x"}},
            "load": {"included": False, "why": "no load results were given"},
            "chaos": {"included": True, "file": "chaos/chaos.json"},
        },
    )
    return root
