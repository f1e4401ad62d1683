"""Edge cache metrics (the seed's: coalesced requests, invalidation coverage, leak alarms)."""

from prometheus_client import Counter, Gauge

REQUESTS = Counter(
    "edge_cache_requests_total",
    "Cacheable GraphQL reads by outcome: hit, stale (served while refreshed), miss, "
    "coalesced (waited on another caller's origin call), shared (another replica's).",
    ("outcome",),
)
ORIGIN_CALLS = Counter("edge_cache_origin_calls_total", "Reads executed against the services.")
EVICTIONS = Counter("edge_cache_evictions_total", "Entries evicted by a tenant's byte cap.")
PURGES = Counter("edge_cache_purges_total", "Purges (tenant or everything).")
CAUGHT_BY_POLL = Counter(
    "edge_cache_invalidations_caught_by_poll_total",
    "Invalidations this replica learnt from polling the shared counters before (or without) "
    "their announcement: a lost or late announcement, caught.",
)
LEAK_ALARMS = Counter(
    "edge_cache_leak_alarms_total", "Cache hits refused by the leak detector (should stay 0)."
)
BYTES = Gauge("edge_cache_bytes", "Serialised bytes held by the cache.")
COVERAGE = Gauge(
    "edge_invalidation_coverage_ratio",
    "Share (0 to 1) of the mutating RPCs whose invalidation set is not empty.",
    # Every worker derives it from the same contracts; one series, not one per process.
    multiprocess_mode="min",
)
