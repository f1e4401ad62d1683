"""The Catalog acceptance pack against an in-process platform: it passes on a fresh
deployment, writes its raw results, and fails when a criterion does not hold."""

from __future__ import annotations

import csv
import doctest
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token
from intelgraph.sdk import catalog as pb
from intelgraph.sdk.billing import Budget
from intelgraph.sdk.money import Money

from servers.acceptance import Check
from servers.acceptance import catalog as lane
from servers.acceptance.catalog import (
    BUDGET_LINK,
    CSV_ROUND_TRIP,
    SCENARIOS,
    budget_differences,
    entity_row_differences,
    impact_differences,
    plain,
    read_csv,
    rows_differences,
    scenario_row_differences,
)
from servers.app import Platform
from servers.switches import WHATIF_SHARING
from tests.support.acceptance import failures, run_lane
from tests.support.serving import Minter, serving

#: The lane runs once per module, on the module's event loop; the judgments are plain tests.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

CRITERIA = [SCENARIOS.name, CSV_ROUND_TRIP.name, BUDGET_LINK.name]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("acceptance-catalog"), database_url=module_database_url
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ran(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[Check], Path]:
    """The lane, run once against the module's platform: its checks and its output directory."""
    out = tmp_path_factory.mktemp("acceptance-catalog-out")
    return await run_lane(platform, "catalog", out), out


def raw(out: Path, name: str) -> Any:
    return json.loads((out / "raw" / "catalog" / f"{name}.json").read_text())


@in_module_loop
async def test_the_pack_passes_on_a_fresh_deployment(ran: tuple[list[Check], Path]) -> None:
    checks, out = ran
    assert failures(checks) == []
    assert [check.name for check in checks] == CRITERIA
    assert all(check.value == 0.0 for check in checks)  # differences found
    results = json.loads((out / "results.json").read_text())
    # Quick mode takes about 5 s here; 15 s is the budget, doubled for busy shared cores.
    assert results["seconds"]["catalog"] < 30


@in_module_loop
async def test_the_raw_results_are_written_and_hold_no_tokens(
    ran: tuple[list[Check], Path],
) -> None:
    _, out = ran
    for name in ("scenario", "csv", "budget"):
        text = (out / "raw" / "catalog" / f"{name}.json").read_text()
        json.loads(text)
        assert "Bearer" not in text
        assert "eyJ" not in text
    scenario = raw(out, "scenario")
    assert len(scenario["share_id"]) == 64
    assert scenario["after_catalog_change"]["scenario"]["catalog_changed"] is True
    assert scenario["differences"] == []
    exported = raw(out, "csv")
    rows = list(csv.reader(io.StringIO(exported["entities_csv"], newline="")))
    assert rows[0][:3] == ["name", "kind", "title"]
    assert [row[0] for row in rows[1:]] == ["api", "cache-a", "cache-b", "db", "web"]
    assert rows[1][2].startswith("'=")  # the formula stays neutralised in the file
    budget = raw(out, "budget")
    assert budget["linked_entity"]["budget"]["budget_id"] == "acceptance-api"
    assert "monthly_amount" not in budget["entity_without_billing_read"]["budget"]


async def set_sharing(platform: Platform, value: str) -> None:
    token = Minter(platform.settings)(["platform.admin"], tenant=uuid.uuid4())
    async with AsyncClient(platform.grpc_target, INSECURE, token=bearer_token(token)) as admin:
        await admin.access.set_switch(name=WHATIF_SHARING, value=value, reason="acceptance test")


@in_module_loop
async def test_with_sharing_backed_out_the_scenario_criterion_fails_alone(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path / "var", services="access,billing,catalog") as backed_out:
        await set_sharing(backed_out, "off")
        checks = await run_lane(backed_out, "catalog", tmp_path / "out")
    assert [check.name for check in checks] == CRITERIA
    (failed,) = [check for check in checks if not check.passed]
    assert failed.name == SCENARIOS.name
    assert failed.measured == "not checked"
    assert "FAILED_PRECONDITION" in failed.detail
    assert "exports (no saved scenario to export)" in checks[1].detail


# -- the judgments fail on bad data ----------------------------------------------------------


@in_module_loop
async def test_a_changed_figure_is_a_difference(ran: tuple[list[Check], Path]) -> None:
    _, out = ran
    scenario = raw(out, "scenario")
    saved = [json_format.ParseDict(impact, pb.EntityImpact()) for impact in scenario["run"]]
    compared, found = impact_differences("same", saved, saved)
    assert (compared, found) == (len(saved) * 2 * len(pb.Reliability.DESCRIPTOR.fields), [])
    drifted = [pb.EntityImpact() for _ in saved]
    for copy, impact in zip(drifted, saved, strict=True):
        copy.CopyFrom(impact)
    drifted[0].after.availability = 0.5
    assert impact_differences("drifted", drifted, saved)[1] == [
        f"drifted: {saved[0].entity} after availability is 0.5, expected "
        f"{saved[0].after.availability!r}"
    ]
    assert impact_differences("shorter", saved[1:], saved)[1]
    _, rows, problems = read_csv(raw(out, "csv")["scenario_csv"].encode())
    assert problems == []
    assert scenario_row_differences(rows[0], scenario["share_id"], saved[0])[1] == []
    assert scenario_row_differences(rows[0], scenario["share_id"], drifted[0])[1]


def entity() -> pb.Entity:
    return pb.Entity(
        kind=pb.ENTITY_KIND_COMPONENT,
        name="api",
        title="=1+1",
        owner="team",
        lifecycle=pb.LIFECYCLE_PRODUCTION,
        tags=["a", "b"],
        dependencies=[
            pb.Dependency(targets=["db"]),
            pb.Dependency(targets=["x", "y"], required=1, group="caches"),
        ],
        expected_availability=0.999,
        requests_per_second=12.345678901234567,
        etag="e1",
        created_at=stamp("2026-12-01T10:00:00.123456Z"),
        updated_at=stamp("2026-12-01T10:00:00.123456Z"),
    )


def stamp(text: str) -> Timestamp:
    moment = Timestamp()
    moment.FromJsonString(text)
    return moment


ROW = {
    "name": "api",
    "kind": "component",
    "title": "'=1+1",
    "description": "",
    "owner": "team",
    "lifecycle": "production",
    "system": "",
    "tags": "a;b",
    "dependencies": "db; x|y (1 of 2, caches)",
    "slos": "",
    "expected_availability": "0.999",
    "requests_per_second": "12.345678901234567",
    "budget_id": "",
    "budget_linked_at": "",
    "etag": "e1",
    "created_at": "2026-12-01T10:00:00.123456+00:00",
    "updated_at": "2026-12-01T10:00:00.123456+00:00",
}


def test_a_csv_cell_that_does_not_read_back_is_a_difference() -> None:
    assert entity_row_differences(ROW, entity())[1] == []
    for column, cell in [
        ("title", "=1+1"),  # not neutralised: a spreadsheet would run it
        ("requests_per_second", "12.3456789012346"),  # not the shortest round-trip form
        ("expected_availability", ""),
        ("dependencies", "db; x|y"),
        ("created_at", "2026-12-01T10:00:00+00:00"),
    ]:
        _, found = entity_row_differences({**ROW, column: cell}, entity())
        assert found, column
    assert plain("'=1+1") == "=1+1"
    assert plain("'plain") == "'plain"
    again = {**ROW, "etag": "e2", "created_at": "", "updated_at": ""}
    assert rows_differences("re-imported", [again], [ROW]) == (14, [])
    assert rows_differences("re-imported", [{**ROW, "tags": "a"}], [ROW])[1]
    assert rows_differences("re-imported", [], [ROW])[1]


def test_a_budget_link_that_is_not_billings_is_a_difference() -> None:
    usd = "USD"
    budget = Budget(
        id="b",
        name="Hosting",
        monthly_amount=Money(minor_units=100, currency_code=usd),
        spent=Money(minor_units=7, currency_code=usd),
    )
    link = pb.BudgetLink(
        budget_id="b",
        name="Hosting",
        monthly_amount=Money(minor_units=100, currency_code=usd),
        spent=Money(minor_units=7, currency_code=usd),
    )
    assert budget_differences("link", link, budget) == (4, [])
    stale = pb.BudgetLink()
    stale.CopyFrom(link)
    stale.spent.minor_units = 6
    assert budget_differences("link", stale, budget)[1]
    assert budget_differences("hidden", link, budget, figures=False)[1]  # figures leaked
    assert budget_differences("hidden", pb.BudgetLink(budget_id="b"), budget, figures=False) == (
        1,
        [],
    )


def test_a_malformed_export_is_a_problem() -> None:
    header, rows, problems = read_csv(b"a,b\r\n1,2\r\n")
    assert (header, rows, problems) == (["a", "b"], [{"a": "1", "b": "2"}], [])
    assert read_csv(b"\xef\xbb\xbfa,b\r\n1,2\r\n")[2] == [
        "the export starts with a byte-order mark"
    ]
    assert read_csv(b"a,b\n1,2\n")[2] == ["the export's records do not end with CRLF"]
    assert read_csv(b"a,b\r\n1\r\n")[2] == ["a record has 1 cells, the header 2"]


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(lane).failed == 0
