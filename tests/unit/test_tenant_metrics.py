"""Per-tenant gauges hold at most their cap of series, keeping the alarming ones longest."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from servers.tenant_metrics import TenantGauge


def exported(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {
        sample.labels["tenant"]: sample.value
        for family in registry.collect()
        if family.name == name
        for sample in family.samples
    }


def dropped(name: str) -> float:
    value = REGISTRY.get_sample_value("conductor_tenant_series_dropped_total", {"metric": name})
    return value or 0.0


def test_past_the_cap_the_stalest_unremarkable_series_goes_first() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("t_drift_units", "Drift.", ("tenant",), registry=registry)
    drift = TenantGauge(gauge, cap=3, remarkable=lambda value: abs(value) > 1)
    before = dropped("t_drift_units")
    for tenant, value in [("a", 7), ("b", 0), ("c", 0), ("b", 1), ("d", 0)]:
        drift.set(tenant, value)
    # "c" was updated longest ago of the healthy ones ("b" was updated again since).
    assert exported(registry, "t_drift_units") == {"a": 7, "b": 1, "d": 0}
    assert drift.tenants() == ["a", "b", "d"]
    assert dropped("t_drift_units") - before == 1


def test_when_every_series_alarms_the_stalest_goes_and_a_dropped_tenant_comes_back() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("t_zscore", "Z.", ("tenant",), registry=registry)
    scores = TenantGauge(gauge, cap=2, remarkable=lambda value: abs(value) >= 3)
    scores.set("a", 4)
    scores.set("b", -5)
    scores.set("c", 9)
    assert exported(registry, "t_zscore") == {"b": -5, "c": 9}
    scores.set("a", 4)
    assert exported(registry, "t_zscore") == {"c": 9, "a": 4}


def test_a_cap_below_one_is_refused() -> None:
    gauge = Gauge("t_none", "None.", ("tenant",), registry=CollectorRegistry())
    with pytest.raises(ValueError, match="at least one"):
        TenantGauge(gauge, cap=0, remarkable=bool)
