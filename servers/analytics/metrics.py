"""Analytics metrics: per-pack latency (the seed's "analytics p95"), refusals, samples, kills."""

from prometheus_client import Counter, Gauge, Histogram

PACK_SECONDS = Histogram(
    "analytics_pack_seconds",
    "RunPack latency per pack, from the call to the result.",
    ("pack",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.45, 1, 2.5, 5, 10),
)
REFUSED = Counter("analytics_runs_refused_total", "Runs refused by their cost hint.", ("pack",))
SAMPLED = Counter("analytics_runs_sampled_total", "Runs answered from a sample.", ("pack",))
DEADLINE_KILLS = Counter(
    "analytics_deadline_kills_total", "Runs stopped at their deadline (worker killed).", ("pack",)
)
PROJECTION_BYTES = Gauge(
    "analytics_projection_bytes", "Resident memory of the projection a pack last ran on."
)
