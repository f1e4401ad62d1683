"""The Prometheus rules of deploy/prometheus: valid, unit-tested, current, and about real series.

promtool checks and tests them; without it the tests that need it are skipped,
saying so, except under CI=true, where its absence fails (`.ci/run` installs
Debian's `prometheus` package, which ships promtool).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

import servers.access.metrics
import servers.analytics.metrics
import servers.billing.metrics
import servers.edge.metrics
from deploy.prometheus import generate
from interceptors.metrics import BUCKETS, RpcStats, RpcStatsCollector
from servers.catalog.descriptor_files import read_catalog, with_slos
from tests.support.serving import IN_CI

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"page", "ticket"}
#: The services' metric modules the alerts read; importing them registers their metrics.
METRIC_MODULES = (
    servers.access.metrics,
    servers.analytics.metrics,
    servers.billing.metrics,
    servers.edge.metrics,
)

#: Words of PromQL that are not series names.
_KEYWORDS = {"and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def promtool() -> str:
    """The promtool executable; the test is skipped without one (and fails under CI)."""
    found = shutil.which("promtool")
    if found is None:
        if IN_CI:
            pytest.fail("CI needs promtool (.ci/run installs Debian's prometheus package)")
        pytest.skip("no promtool: apt-get install prometheus (Debian's package ships promtool)")
    return found


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of `kind` ("alert" or "record") in the rule files."""
    return [
        rule
        for path in RULE_FILES
        for group in _load(path)["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


def _series_read(expr: str) -> set[str]:
    """The series names a PromQL expression selects (label matchers, groupings, ranges removed)."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)|\"[^\"]*\"", " ", expr)
    names = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?![a-zA-Z0-9_:]*\s*\()", bare)
    return {name for name in names if name not in _KEYWORDS}


def _exported() -> set[str]:
    """Every series name the platform's metrics expose (counters as `_total`, histograms' parts)."""
    registry = CollectorRegistry()
    registry.register(RpcStatsCollector(RpcStats()))
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = set()
    for family in [*REGISTRY.collect(), *registry.collect()]:
        for suffix in suffixes.get(family.type, [""]):
            names.add(family.name + suffix)
    return names


def test_the_rule_files_are_valid() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"conductor_alerts.yml", "slo_rules.yml"} <= {path.name for path in RULE_FILES}


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, TEST_FILES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_slo_rules_are_what_the_catalog_generator_writes_now() -> None:
    assert generate.RULES.read_text() == generate.generated_rules(), (
        "deploy/prometheus/slo_rules.yml is stale: run `python -m deploy.prometheus.generate`"
    )
    assert generate.main(["--check"]) == 0


def test_every_alert_fires_in_one_unit_test_and_stays_silent_in_another() -> None:
    fired: set[tuple[str, str, str]] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                if not expected:
                    silent.add(check["alertname"])
                for alert in expected:
                    labels = alert.get("exp_labels", {})
                    fired.add(
                        (
                            check["alertname"],
                            labels.get("slo_name", ""),
                            labels.get("long_window", ""),
                        )
                    )
    for rule in _rules("alert"):
        labels = rule["labels"]
        key = (rule["alert"], labels.get("slo_name", ""), labels.get("long_window", ""))
        assert key in fired, f"no unit test makes {key} fire"
        assert rule["alert"] in silent, f"no unit test expects {rule['alert']} to stay silent"


def test_every_alert_says_how_bad_it_is_what_happened_and_where_its_runbook_is() -> None:
    spec = with_slos(read_catalog(generate.SPEC.read_bytes()), {})
    base = generate.runbook_base(spec["conductor"])
    headings = re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    # GitHub's anchors: lower case, punctuation dropped, spaces as hyphens.
    anchors = {re.sub(r"[^\w\- ]", "", heading).lower().replace(" ", "-") for heading in headings}
    for rule in _rules("alert"):
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == base, rule["alert"]
        assert anchor in anchors, f"docs/runbooks.md has no section #{anchor}"


def test_every_series_an_alert_reads_is_one_the_platform_exports() -> None:
    exported = _exported()
    recorded = {rule["record"] for rule in _rules("record")}
    read = {
        name for rule in _rules("alert") + _rules("record") for name in _series_read(rule["expr"])
    }
    assert read, "no series found in the rules"
    assert read <= exported | recorded, f"not exported: {sorted(read - exported - recorded)}"
    for name in ("edge_invalidation_coverage_ratio", "billing_variance_zscore"):
        assert name in exported
    assert not {"edge_invalidation_coverage_percent", "billing_variance"} & exported


def test_thresholds_sit_on_bucket_bounds() -> None:
    # A bucket's `le` is written as the collector writes it, or the selector matches nothing.
    spec = generate.SPEC.read_text()
    bounds = {str(bound) for bound in BUCKETS}
    assert set(re.findall(r'le="([^"]+)"', spec)) <= bounds
    # The p95 alert compares at a bucket bound, where histogram_quantile is exact.
    (latency,) = [rule for rule in _rules("alert") if rule["alert"] == "AnalyticsPackLatencyHigh"]
    assert latency["expr"].rstrip().endswith("> 0.45")
    assert 0.45 in servers.analytics.metrics.PACK_SECONDS._upper_bounds


def test_the_docs_list_every_metric_the_platform_exports() -> None:
    import servers.app  # noqa: F401, PLC0415 - registers every service's metrics
    from servers.http import metrics_registry  # noqa: PLC0415 - the whole platform's metrics

    listed = (ROOT / "docs" / "observability.md").read_text()
    missing = []
    for family in metrics_registry().collect():
        if family.name.startswith(("process_", "python_")):
            continue  # the client library's own
        name = family.name + ("_total" if family.type == "counter" else "")
        if f"`{name}`" not in listed:
            missing.append(name)
    assert missing == [], f"docs/observability.md does not list {missing}"
