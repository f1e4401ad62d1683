"""Analytics storage: tenant graphs and imports (`graphs`), whole-graph results (`results`).

Use cases call these functions with the `AsyncSession` of the transaction they own.
"""

from __future__ import annotations

from servers.analytics.store import results
from servers.analytics.store.graphs import (
    EntityRow,
    GraphRevisionRow,
    RelationshipRow,
    StagedEntityRow,
    StagedRelationshipRow,
    bump_revision,
    check_endpoints,
    clear_staged,
    entity_ids,
    graph_size,
    merge_staged,
    relationship_edges,
    revision,
    snapshot_session,
    stage,
    staged_counts,
    sweep_staged,
)

__all__ = [
    "EntityRow",
    "GraphRevisionRow",
    "RelationshipRow",
    "StagedEntityRow",
    "StagedRelationshipRow",
    "bump_revision",
    "check_endpoints",
    "clear_staged",
    "entity_ids",
    "graph_size",
    "merge_staged",
    "relationship_edges",
    "results",
    "revision",
    "snapshot_session",
    "stage",
    "staged_counts",
    "sweep_staged",
]
