"""Analytics metrics: per-pack latency (the seed's "analytics p95"), refusals, kills, freshness."""

from prometheus_client import Counter, Gauge, Histogram

PACK_SECONDS = Histogram(
    "analytics_pack_seconds",
    "RunPack latency per pack, from the call to the result.",
    ("pack",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.45, 1, 2.5, 5, 10),
)
REFUSED = Counter("analytics_runs_refused_total", "Runs refused by their cost hint.", ("pack",))
STALE = Counter(
    "analytics_stale_reads_total",
    "Runs answered from an earlier revision while the newest one's results were computed.",
    ("pack",),
)
MATERIALIZE_SECONDS = Histogram(
    "analytics_materialize_seconds",
    "Computing a graph revision's whole-graph packs, from the start to stored results.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
DEADLINE_KILLS = Counter(
    "analytics_deadline_kills_total", "Runs stopped at their deadline (worker killed).", ("pack",)
)
PROJECTION_BYTES = Gauge(
    "analytics_projection_bytes", "Resident memory of the projection a pack last ran on."
)
