"""GraphQL facade metrics: requests by operation and outcome, and their duration.

`operation` is the persisted operation's name (the safelist is the operator's,
so the label set is bounded by it) or "adhoc" for any other document.
"""

from prometheus_client import Counter, Histogram

GRAPHQL_REQUESTS = Counter(
    "graphql_requests_total",
    "GraphQL requests by operation (a persisted operation's name, or adhoc) and outcome: ok, "
    "errors (answered with field errors), refused (not run), cached (from the edge cache).",
    ("operation", "outcome"),
)
GRAPHQL_SECONDS = Histogram(
    "graphql_request_duration_seconds",
    "Time to answer GraphQL requests, by operation.",
    ("operation",),
)
