"""Imports a small graph and asks who matters most in it (the PageRank pack).

Scopes: `analytics.write` (import), `analytics.read` (run the pack). `Client.from_env()`
reads CONDUCTOR_TARGET and CONDUCTOR_TOKEN, and CONDUCTOR_PLAINTEXT=1 for a server without
TLS such as `make run` (clients/README.md).
"""

from intelgraph.sdk import Client
from intelgraph.sdk.analytics import Entity, PackParameters, Relationship

PEOPLE = ["ada", "brian", "chen", "dana", "emeka", "farah"]
KNOWS = [("ada", "chen"), ("brian", "chen"), ("dana", "chen"), ("chen", "emeka"),
         ("emeka", "farah"), ("farah", "chen"), ("brian", "ada")]  # fmt: skip


def main() -> None:
    """Run the example; exits 0 when it worked."""
    entities = (Entity(id=name, type="person", label=name.title()) for name in PEOPLE)
    relationships = (
        Relationship(id=f"{a}-{b}", source_id=a, target_id=b, type="knows", weight=1.0)
        for a, b in KNOWS
    )
    with Client.from_env() as client:
        imported = client.analytics.import_graph_from(
            entities=entities, relationships=relationships
        )
        print(
            f"imported {imported.entities_upserted} entities and "
            f"{imported.relationships_upserted} relationships (revision {imported.graph_revision})"
        )
        # Whole-graph results are computed in the background after each import; a small
        # graph's are ready at once (RunPack waits a few seconds for a tenant's first ones).
        ran = client.analytics.run_pack(
            pack_id="analytics.pagerankTop:v1", parameters=PackParameters(top_k=3)
        )
        related = client.analytics.run_pack(
            pack_id="analytics.personalizedPagerank:v1",
            parameters=PackParameters(seed_ids=["ada"], top_k=3),
        )
    freshness = ran.result.freshness
    print(f"PageRank at revision {freshness.revision} (stale: {freshness.stale}):")
    for rank, scored in enumerate(ran.result.entities, start=1):
        print(f"{rank}. {scored.entity_id}  {scored.score:.4f}")
    bound = related.result.accuracy.l1_error_bound
    print(f"most related to ada (L1 error at most {bound:.1e}):")
    for scored in related.result.entities:
        print(f"   {scored.entity_id}  {scored.score:.4f}")


if __name__ == "__main__":
    main()
