"""Per-tenant gauges with a cap on their series, so that tenants cannot grow /metrics unbounded.

A `tenant` label is worth its cost only where one tenant's value pages someone
(a billing drift, a variance outlier). Each such gauge holds at most `cap`
tenants' series: past it, the series of the tenant updated longest ago whose
value is unremarkable is dropped first — an alarming series goes only when
every series is alarming — and `conductor_tenant_series_dropped_total` counts
it. A dropped tenant comes back at its next update.

>>> from prometheus_client import CollectorRegistry, Gauge
>>> gauge = Gauge("drift", "Drift.", ("tenant",), registry=CollectorRegistry())
>>> drift = TenantGauge(gauge, cap=2, remarkable=lambda value: value != 0)
>>> drift.set("a", 5); drift.set("b", 0); drift.set("c", 0)
>>> drift.tenants()
['a', 'c']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from prometheus_client import Counter, Gauge

#: Tenants' series a gauge holds, unless told otherwise.
DEFAULT_CAP = 1000

SERIES_DROPPED = Counter(
    "conductor_tenant_series_dropped_total",
    "Per-tenant series dropped from a gauge at its cap (the tenant's next update brings it back).",
    ("metric",),
)


class TenantGauge:
    """A gauge labelled by tenant, holding at most `cap` tenants' series.

    Args:
        gauge: The gauge; its only label is the tenant.
        cap: Most tenants' series held at once.
        remarkable: Whether a value is worth keeping over others (it would alert).
    """

    def __init__(
        self, gauge: Gauge, *, cap: int = DEFAULT_CAP, remarkable: Callable[[float], bool]
    ) -> None:
        if cap < 1:
            raise ValueError("a tenant gauge holds at least one series")
        self._gauge = gauge
        self._cap = cap
        self._remarkable = remarkable
        #: Each held tenant's last value, the least recently updated first.
        self._values: OrderedDict[str, float] = OrderedDict()
        self._dropped = SERIES_DROPPED.labels(next(iter(gauge.describe())).name)

    def set(self, tenant: str, value: float) -> None:
        """Set the tenant's series to `value`, dropping another tenant's at the cap."""
        if tenant in self._values:
            self._values.move_to_end(tenant)
        elif len(self._values) >= self._cap:
            self._drop_one()
        self._values[tenant] = value
        self._gauge.labels(tenant).set(value)

    def tenants(self) -> list[str]:
        """The tenants whose series are held, the least recently updated first."""
        return list(self._values)

    def _drop_one(self) -> None:
        victim = next(
            (tenant for tenant, value in self._values.items() if not self._remarkable(value)),
            next(iter(self._values)),
        )
        del self._values[victim]
        self._gauge.remove(victim)
        self._dropped.inc()
