"""Declares services (web behind a 2-of-3 group), finds the weak link, shares a what-if as CSV.

Scopes: `catalog.write` (entities, the scenario), `catalog.read` (availability, what-if, CSV).
"""

import csv
import io

from intelgraph.sdk import AlreadyExistsError, Client
from intelgraph.sdk import catalog as pb


def service(name: str, availability: float, *needs: pb.Dependency) -> pb.Entity:
    """A component with an expected availability and an availability SLO of 99.9%."""
    return pb.Entity(
        kind=pb.ENTITY_KIND_COMPONENT,
        name=name,
        owner="team-shop",
        expected_availability=availability,
        requests_per_second=50.0,
        dependencies=list(needs),
        slos=[pb.Slo(name="availability", objective=0.999)],
    )


def declare(client: Client, entity: pb.Entity) -> None:
    """Create the entity, or keep it if the tenant has it already (the example runs twice)."""
    try:
        client.catalog.create_entity(entity=entity)
    except AlreadyExistsError:
        print(f"{entity.name}: already in the catalog, kept as it is")


def main() -> None:
    """Run the example; exits 0 when it worked."""
    with Client.from_env() as client:
        catalog = client.catalog
        for region in ("eu", "us", "ap"):
            declare(client, service(f"api-{region}", 0.99))
        declare(client, service("db", 0.995))
        regions = pb.Dependency(targets=["api-eu", "api-us", "api-ap"], required=2, group="regions")
        declare(client, service("web", 0.9999, pb.Dependency(targets=["db"]), regions))
        answer = catalog.get_availability(entity="web").availability
        weakest = ", ".join(
            f"{link.entity}{' (' + link.group + ')' if link.group else ''} +{link.gain:.6f}"
            for link in answer.weakest_links
        )
        print(f"web: {answer.composite:.6f} composite; weakest links {weakest}")
        status = catalog.get_slo_status(entity="web").status.budget
        print(f"web's error budget: {status.time_budget_seconds / 60:.1f} minutes per 30 days")
        scenario = pb.Scenario(
            name="database failover",
            overrides=[pb.EntityOverride(entity="db", availability=0.9999)],
        )
        saved = catalog.save_scenario(scenario=scenario)
        for impact in saved.impacts:
            print(
                f"{impact.entity}: {impact.before.availability:.6f} -> "
                f"{impact.after.availability:.6f} (burn {impact.before.burn_rate:.2f} -> "
                f"{impact.after.burn_rate:.2f})"
            )
        print(f"share id {saved.scenario.id}")
        data = b"".join(
            chunk.data
            for chunk in catalog.export_csv(
                kind=pb.CSV_EXPORT_KIND_SCENARIO, scenario_id=saved.scenario.id
            )
        )
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        print(f"CSV: {len(rows)} rows, columns {', '.join(list(rows[0])[:4])}, ...")
        if {row["entity"] for row in rows} != {i.entity for i in saved.impacts}:
            raise SystemExit("the CSV does not hold the scenario's results")


if __name__ == "__main__":
    main()
