"""Catalog metrics: the seed's "what-if usage", and alert evaluations by outcome."""

from prometheus_client import Counter

WHAT_IF = Counter(
    "catalog_whatif_total",
    "What-if scenarios used, by action: run (evaluated unsaved), save (a new share id), "
    "open (a saved scenario read by its id).",
    ["action"],
)
