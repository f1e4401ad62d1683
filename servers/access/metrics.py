"""Access metrics: the seed's "access grant time" and "JIT tokens not revoked on time"."""

from prometheus_client import Counter, Gauge, Histogram

GRANT_DECISION_SECONDS = Histogram(
    "access_grant_decision_seconds",
    "Time from an access request to its decision (approval that grants, or denial).",
    buckets=(1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400),
)
GRANTS_ACTIVE = Gauge(
    "access_grants_active",
    "Grants in force now, across tenants.",
    multiprocess_mode="mostrecent",
)
GRANTS_OVERDUE = Gauge(
    "access_grants_overdue",
    "Grants past their end that are not yet recorded expired (should be 0).",
    multiprocess_mode="mostrecent",
)
REVOCATIONS = Counter("access_revocations_total", "Grants revoked early.")
EXPIRIES = Counter("access_expiries_total", "Grants recorded expired at their end.")
