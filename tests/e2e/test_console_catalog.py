"""The console's catalog, what-if and approvals pages in a real headless browser.

A platform serving the Catalog and Access (no Rag) is seeded through the SDK:
a small shop (web → api → db and a 2-of-3 group of regions) with SLOs and
recorded events that burn budget, plus enough entities to need a second page.
Screenshots of every page land in `$CONDUCTOR_TEST_ARTIFACTS/console/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import ConductorError
from intelgraph.sdk import billing as billing_pb
from intelgraph.sdk import catalog as pb
from intelgraph.sdk.money import Money
from intelgraph.sdk.services import AsyncCatalogClient
from playwright.async_api import Browser, BrowserContext, Dialog, Page, expect

from servers.app import Platform
from tests.support.browser import headless_chromium, sign_in, snapshot
from tests.support.clients import SdkClients
from tests.support.serving import Minter, serving

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

WRITER = ["catalog.read", "catalog.write"]
READER = ["catalog.read"]
#: Sets a Billing budget and links the catalog to it (linking reads the budget).
BUDGETER = ["billing.read", "billing.write", "catalog.read", "catalog.write"]
#: Free text is free: a title that would run if it were not escaped.
HOSTILE_TITLE = '<script>alert("title")</script><img src=x onerror=alert(1)>'
#: Entities beyond the shop, so the list needs a second page.
FILLER = 50


@dataclass
class Shop:
    """The seeded tenant: who is who, and a Catalog client of its writer."""

    tenant: uuid.UUID
    minter: Minter
    catalog: AsyncCatalogClient
    budget_linked: bool

    def token(self, scopes: list[str], subject: str = "alice") -> str:
        return self.minter(scopes, tenant=self.tenant, subject=subject)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(
        tmp_path_factory.mktemp("console"), services="catalog,access,billing"
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with headless_chromium() as launched:
        yield launched


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clients(platform: Platform) -> AsyncIterator[SdkClients]:
    async with contextlib.AsyncExitStack() as closing:
        yield SdkClients(platform.grpc_target, closing)


def _minute(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.replace(second=0, microsecond=0))
    return stamp


def _component(name: str, **fields: object) -> pb.Entity:
    values: dict[str, object] = {"kind": pb.ENTITY_KIND_COMPONENT, "name": name, **fields}
    return pb.Entity(**values)  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(platform: Platform, clients: SdkClients) -> Shop:
    tenant = uuid.uuid4()
    minter = Minter(platform.settings)
    catalog = clients.bearing(minter(WRITER, tenant=tenant)).catalog
    resource = {"kind": pb.ENTITY_KIND_RESOURCE, "owner": "team-data"}
    for entity in [
        _component("db", expected_availability=0.995, tags=["storage"], **resource),
        *(
            _component(f"region-{code}", expected_availability=0.99, **resource)
            for code in ("eu", "us", "ap")
        ),
        _component(
            "api",
            title="Payments API",
            owner="team-payments",
            lifecycle=pb.LIFECYCLE_PRODUCTION,
            tags=["tier-1"],
            links=[pb.Link(url="https://runbooks.example/api", title="Runbook")],
            expected_availability=0.999,
            requests_per_second=10.0,
            dependencies=[
                pb.Dependency(targets=["db"]),
                pb.Dependency(
                    targets=["region-eu", "region-us", "region-ap"], required=2, group="regions"
                ),
            ],
            slos=[pb.Slo(name="availability", objective=0.99)],
        ),
        _component(
            "web",
            title=HOSTILE_TITLE,
            description="The shop's storefront.",
            owner="team-web",
            lifecycle=pb.LIFECYCLE_PRODUCTION,
            tags=["frontend", "tier-1"],
            requests_per_second=50.0,
            dependencies=[pb.Dependency(targets=["api"])],
            slos=[pb.Slo(name="availability", objective=0.999)],
        ),
        *(
            _component(f"svc-{n:02d}", owner="team-misc", lifecycle=pb.LIFECYCLE_EXPERIMENTAL)
            for n in range(FILLER)
        ),
    ]:
        await catalog.create_entity(entity=entity)
    now = datetime.now(UTC)
    earlier = [
        pb.MinuteEvents(
            minute=_minute(now - timedelta(days=2, minutes=m)), good_events=990, total_events=1000
        )
        for m in range(60)
    ]
    recent = [
        pb.MinuteEvents(
            minute=_minute(now - timedelta(minutes=m)), good_events=980, total_events=1000
        )
        for m in range(1, 31)
    ]
    await catalog.record_slo_events(entity="web", slo="availability", minutes=earlier + recent)
    try:
        billing = clients.bearing(minter(BUDGETER, tenant=tenant)).billing
        await billing.set_budget(
            budget=billing_pb.Budget(
                id="payments",
                name="Payments runtime",
                monthly_amount=Money(minor_units=123456, currency_code="USD"),
            )
        )
        budgeter = clients.bearing(minter(BUDGETER, tenant=tenant)).catalog
        await budgeter.link_budget(entity="api", budget_id="payments")
        linked = True
    except ConductorError:
        linked = False  # Budgets are being built alongside: the page then says "none linked"
    return Shop(tenant, minter, catalog, linked)


@contextlib.asynccontextmanager
async def signed_in(
    browser: Browser, base: str, token: str, *, clipboard: bool = False
) -> AsyncIterator[Page]:
    """A new browser context signed in with `token`; any script dialog fails the test."""
    context: BrowserContext = await browser.new_context(
        accept_downloads=True,
        permissions=["clipboard-read", "clipboard-write"] if clipboard else [],
    )
    page = await context.new_page()
    dialogs: list[str] = []

    async def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", record)
    try:
        await sign_in(page, base, token)
        await expect(page.locator("#sections")).to_be_visible()
        yield page
    finally:
        await context.close()
    assert not dialogs, f"a script ran: {dialogs}"


def _base(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.http_port}"


async def _names(page: Page) -> list[str]:
    names: list[str] = await page.locator("#entities tbody tr[data-name]").evaluate_all(
        "rows => rows.map(row => row.dataset.name)"
    )
    return names


async def test_the_list_searches_and_pages(
    platform: Platform, browser: Browser, shop: Shop
) -> None:
    base = _base(platform)
    async with signed_in(browser, base, shop.token(READER)) as page:
        await expect(page).to_have_url(re.compile(r"/console/catalog$"))
        sections = await page.locator("#sections a").evaluate_all(
            "links => links.map(a => a.dataset.section)"
        )
        assert sections == ["catalog", "what-if", "scenarios", "approvals"]  # no Rag here
        if shop.budget_linked:  # without billing.read the link shows, not the figures
            await page.goto(f"{base}/console/catalog/api")
            await expect(page.locator("#budget-link")).to_contain_text("billing.read")
            await page.goto(f"{base}/console/catalog")
        first = await _names(page)
        assert len(first) == 50
        assert first[:3] == ["api", "db", "region-ap"]
        await snapshot(page, "10-catalog-list", full_page=True)
        await page.click("#next-page")
        await expect(page).to_have_url(re.compile(r"page="))
        second = await _names(page)
        assert second == ["svc-45", "svc-46", "svc-47", "svc-48", "svc-49", "web"]
        assert not set(first) & set(second)
        await page.click("#first-page")
        assert await _names(page) == first

        await page.fill("input[name=q]", "payments")
        await page.click("#search button[type=submit]")
        assert await _names(page) == ["api"]
        await page.fill("input[name=q]", "")
        await page.fill("input[name=tag]", "tier-1")
        await page.click("#search button[type=submit]")
        assert await _names(page) == ["api", "web"]
        await page.fill("input[name=tag]", "")
        await page.select_option("select[name=kind]", "resource")
        await page.click("#search button[type=submit]")
        assert await _names(page) == ["db", "region-ap", "region-eu", "region-us"]
        await page.fill("input[name=owner]", "team-data")
        await page.fill("input[name=q]", "eu")
        await page.click("#search button[type=submit]")
        assert await _names(page) == ["region-eu"]
        await snapshot(page, "11-catalog-search")
        # The hostile title is shown as text, never run.
        await page.goto(f"{base}/console/catalog?q=storefront")
        await expect(page.locator("#entities tbody")).to_contain_text('<script>alert("title")')
        # Another section of an unserved service is a readable 404.
        answer = await page.goto(f"{base}/console/documents")
        assert answer is not None
        assert answer.status == 404
        await expect(page.locator("h1")).to_have_text("Not found")


async def test_an_entity_shows_its_graph_budget_and_burn(
    platform: Platform, browser: Browser, shop: Shop
) -> None:
    base = _base(platform)
    async with signed_in(browser, base, shop.token([*READER, "billing.read"])) as page:
        await page.goto(f"{base}/console/catalog/api")
        graph = page.locator("#dependency-graph svg")
        await expect(graph).to_be_visible()
        names = await graph.locator("g.node").evaluate_all(
            "nodes => nodes.map(n => n.dataset.name)"
        )
        assert sorted(names) == ["api", "db", "region-ap", "region-eu", "region-us"]
        await expect(graph.locator("g.group-label")).to_have_text("2 of 3 (regions)")
        assert await graph.locator("path.edge").count() == 4
        await expect(page.locator("#composite")).to_contain_text("%")
        await expect(page.locator("#own")).to_contain_text("declared")
        await expect(page.locator("#weakest-links a").first).to_be_visible()
        runbook = page.locator("#links a")
        assert await runbook.get_attribute("href") == "https://runbooks.example/api"
        budget = page.locator("#budget-link")
        if shop.budget_linked:
            await expect(budget).to_contain_text("Payments runtime: 1,234.56 USD a month")
        else:
            await expect(budget).to_have_text("none linked")
        await expect(page.locator("#dependencies")).to_contain_text("2 of 3")

        await page.goto(f"{base}/console/catalog/web")
        await expect(page.locator("#entity-name")).to_contain_text('<script>alert("title")')
        names = await page.locator("#dependency-graph g.node").evaluate_all(
            "nodes => nodes.map(n => n.dataset.name)"
        )
        assert sorted(names) == ["api", "db", "region-ap", "region-eu", "region-us", "web"]
        slo = page.locator("#slo-availability")
        await expect(slo.locator("svg.burn-chart polyline.consumed")).to_have_count(1)
        await expect(slo.locator("svg.burn-chart polyline.even-spend")).to_have_count(1)
        await expect(slo.locator(".attainment")).to_contain_text("90,000 events")
        await expect(slo.locator(".budget-time")).to_contain_text("43.2 min")
        await expect(slo.locator(".burn-rates tr[data-window='1h']")).to_contain_text("20.00")
        await expect(slo.locator(".alerts tr.firing").first).to_contain_text("FIRES")
        await snapshot(page, "12-entity-graph-and-burn", full_page=True)

        # A node of the graph leads to its entity.
        await page.locator("#dependency-graph a:has(g[data-name='db'])").click()
        await expect(page).to_have_url(re.compile(r"/console/catalog/db$"))
        await expect(page.locator("#no-slo")).to_be_visible()
        answer = await page.goto(f"{base}/console/catalog/ghost")
        assert answer is not None
        assert answer.status == 404


async def _results(page: Page) -> list[list[str]]:
    rows: list[list[str]] = await page.locator("#impacts tbody tr").evaluate_all(
        "rows => rows.map(row => [...row.children].map(cell => cell.innerText.trim()))"
    )
    return rows


async def test_what_if_runs_saves_and_shares_within_the_tenant_only(
    platform: Platform, browser: Browser, shop: Shop
) -> None:
    base = _base(platform)
    async with signed_in(browser, base, shop.token(WRITER), clipboard=True) as page:
        await page.goto(f"{base}/console/catalog/api")
        await page.click("#what-if-link")
        await expect(page).to_have_url(re.compile(r"/what-if\?entity=api$"))
        rows = page.locator("#overrides tr.override")
        assert await rows.first.locator("input[name=entity]").input_value() == "api"
        await rows.first.locator("input[name=entity]").fill("db")
        await rows.first.locator("input[name=availability]").fill("99.99%")
        await page.click("#add-row")  # console.js adds rows; the form works without it
        count = await rows.count()
        last = rows.nth(count - 1)
        await last.locator("input[name=entity]").fill("region-us")
        await last.locator("input[name=availability]").fill("0.5")
        await page.click("#run")
        table = page.locator("#impacts")
        await expect(table).to_be_visible()
        ran = await _results(page)
        assert [row[0] for row in ran] == ["api", "db", "region-us", "web"]
        db = table.locator("tr[data-entity=db] td[data-figure=Availability]")
        assert await db.get_attribute("data-verdict") == "better"
        await expect(db).to_contain_text("99.5000% → 99.9900%")
        region = table.locator("tr[data-entity='region-us'] td[data-figure=Availability]")
        assert await region.get_attribute("data-verdict") == "worse"
        web_burn = table.locator("tr[data-entity=web] td[data-figure='Burn rate']")
        assert await web_burn.get_attribute("data-verdict") in {"better", "worse"}
        await snapshot(page, "13-what-if-before-after", full_page=True)

        # A row that cannot be read is said so, with what was typed kept.
        await rows.first.locator("input[name=objective]").fill("lots")
        await page.click("#run")
        await expect(page.locator(".problem")).to_contain_text("Row 1: objective 'lots'")
        assert await rows.first.locator("input[name=entity]").input_value() == "db"
        await rows.first.locator("input[name=objective]").fill("")

        await page.fill("input[name=name]", "db upgrade, one region down")
        await page.click("#save")
        await expect(page).to_have_url(re.compile(r"/console/catalog/scenarios/[0-9a-f]{64}\?"))
        await expect(page.locator(".notice")).to_contain_text("Saved")
        share_url = await page.locator("#share-url").input_value()
        scenario_id = share_url.rsplit("/", 1)[1]
        assert share_url == f"{base}/console/catalog/scenarios/{scenario_id}"
        assert await _results(page) == ran
        await expect(page.locator("#scenario-name")).to_have_text("db upgrade, one region down")
        await expect(page.locator("#overrides tbody tr")).to_have_count(2)
        await page.click("#copy-share")
        await expect(page.locator("#copy-status")).to_have_text("Copied.")
        assert await page.evaluate("navigator.clipboard.readText()") == share_url
        await snapshot(page, "14-saved-scenario", full_page=True)

        # Someone else of the tenant opens the link in a browser of their own.
        async with signed_in(browser, base, shop.token(READER, subject="bob")) as colleague:
            await colleague.goto(share_url)
            assert await _results(colleague) == ran
            await expect(colleague.locator("#scenario-id")).to_have_text(scenario_id)
        # A person of another tenant finds nothing there.
        stranger_token = shop.minter(READER, tenant=uuid.uuid4(), subject="mallory")
        async with signed_in(browser, base, stranger_token) as stranger:
            answer = await stranger.goto(share_url)
            assert answer is not None
            assert answer.status == 404
            await expect(stranger.locator("h1")).to_have_text("Not found")
            await snapshot(stranger, "15-scenario-other-tenant")

        # The catalog moves on: the saved scenario says so and keeps its results.
        changed = (await shop.catalog.get_entity(name="region-eu")).entity
        changed.expected_availability = 0.98
        await shop.catalog.update_entity(entity=changed)
        await page.reload()
        await expect(page.locator("#catalog-changed")).to_be_visible()
        assert await _results(page) == ran

        # Rename and delete from the list; a POST without the CSRF token changes nothing.
        await page.goto(f"{base}/console/catalog/scenarios")
        row = page.locator(f"tr[data-scenario-id='{scenario_id}']")
        await row.locator("form.rename input[name=name]").fill("regions drill")
        await row.locator("form.rename button").click()
        await expect(page.locator(".notice")).to_have_text("Renamed.")
        await expect(row).to_contain_text("regions drill")
        forged = await page.request.post(
            f"{base}/console/catalog/scenarios/{scenario_id}/delete", form={"csrf": "guess"}
        )
        assert forged.status == 403
        assert "form expired" in await forged.text()
        bare = await page.request.post(f"{base}/console/catalog/scenarios/{scenario_id}/delete")
        assert bare.status == 403
        await page.reload()
        await expect(row).to_be_visible()
        await row.locator("form.delete button").click()
        await expect(page.locator(".notice")).to_have_text("Deleted.")
        await expect(page.locator("#scenarios tbody")).to_contain_text("No saved scenarios yet.")


async def test_csv_downloads(
    platform: Platform, browser: Browser, shop: Shop, tmp_path: Path
) -> None:
    base = _base(platform)
    saved = await shop.catalog.save_scenario(
        scenario=pb.Scenario(
            name="cheaper db", overrides=[pb.EntityOverride(entity="db", availability=0.99)]
        )
    )
    async with signed_in(browser, base, shop.token(READER)) as page:
        probe = await page.request.get(f"{base}/console/catalog/export/entities.csv")
        if probe.status == 501:
            # The refusal is a readable page, not a traceback.
            await page.goto(f"{base}/console/catalog/export/entities.csv")
            await expect(page.locator("h1")).to_have_text("Not available yet")
            await expect(page.locator(".problem")).to_contain_text("does not offer this yet")
            pytest.skip(
                "ExportCsv still answers UNIMPLEMENTED (being built alongside): the console's "
                "link and its refusal page are checked; the downloaded CSV is not yet"
            )
        assert probe.status == 200
        assert probe.headers["content-type"].startswith("text/csv")
        await page.goto(f"{base}/console/catalog")
        for kind, expected in (("entities", "region-eu"), ("slos", "availability")):
            async with page.expect_download() as downloading:
                await page.click(f"#csv-downloads [data-export={kind}]")
            download = await downloading.value
            assert download.suggested_filename == f"{kind}.csv"
            csv = tmp_path / f"{kind}.csv"
            await download.save_as(csv)
            assert expected in csv.read_text(encoding="utf-8")
        await page.goto(f"{base}/console/catalog/scenarios/{saved.scenario.id}")
        async with page.expect_download() as downloading:
            await page.click("#scenario-csv")
        csv = tmp_path / "scenario.csv"
        await (await downloading.value).save_as(csv)
        assert "api" in csv.read_text(encoding="utf-8")
        # Another tenant's scenario cannot be exported either.
        stranger = await browser.new_context()
        try:
            outsider = await stranger.new_page()
            await sign_in(outsider, base, shop.minter(READER, tenant=uuid.uuid4()))
            refused = await outsider.request.get(
                f"{base}/console/catalog/scenarios/{saved.scenario.id}/results.csv"
            )
            assert refused.status == 404
        finally:
            await stranger.close()


async def test_approvals_approve_deny_count_down_and_refuse_readably(
    platform: Platform, browser: Browser, clients: SdkClients, shop: Shop
) -> None:
    base = _base(platform)
    ends = Timestamp()
    ends.FromDatetime(datetime.now(UTC) + timedelta(hours=2))
    dave = clients.bearing(shop.token(READER, subject="dave")).access
    approved = await dave.request_access(scope=["catalog.write"], expires_at=ends, reason="on call")
    denied = await dave.request_access(scope=["analytics.read"], expires_at=ends, reason="curious")
    carol_scopes = ["admin.write", "catalog.read"]
    carol = clients.bearing(shop.token(carol_scopes, subject="carol")).access
    own = await carol.request_access(scope=["audit.read"], expires_at=ends, reason="self-serve")

    async with signed_in(browser, base, shop.token(carol_scopes, subject="carol")) as page:
        await page.goto(f"{base}/console/approvals")
        requests = page.locator("#requests tbody tr[data-request-id]")
        await expect(requests).to_have_count(3)
        first = page.locator(f"tr[data-request-id='{approved.access_request.id}']")
        await expect(first).to_contain_text("dave")
        await expect(first).to_contain_text("catalog.write")
        await expect(first).to_contain_text("on call")
        await expect(first).to_contain_text(re.compile(r"1 h 59 min|2 h"))
        await snapshot(page, "16-approvals-pending", full_page=True)

        await first.locator("input[name=comment]").fill("ok for tonight")
        await first.locator("button.approve").click()
        await expect(page.locator(".notice")).to_have_text("Approved.")
        grant = page.locator("#grants tbody tr[data-grantee=dave]")
        await expect(grant).to_contain_text("catalog.write")
        clock = grant.locator("time.countdown")
        assert await clock.get_attribute("data-ends-at")
        shown = await clock.inner_text()
        assert re.fullmatch(r"(1 h \d+ min \d+ s|2 h( \d+ s)?)", shown), shown
        await expect(clock).not_to_have_text(shown, timeout=3000)  # console.js counts down

        second = page.locator(f"tr[data-request-id='{denied.access_request.id}']")
        await second.locator("input[name=comment]").fill("not needed")
        await second.locator("button.deny").click()
        await expect(page.locator(".notice")).to_have_text("Denied.")
        await expect(page.locator("#requests tbody tr[data-request-id]")).to_have_count(1)

        # One's own request: the platform's refusal, as a sentence with its status.
        mine = page.locator(f"tr[data-request-id='{own.access_request.id}']")
        async with page.expect_response(re.compile(r"/console/approvals/")) as answering:
            await mine.locator("button.approve").click()
        assert (await answering.value).status == 403
        await expect(page.locator(".problem").first).to_contain_text(
            "Requesters never review their own requests"
        )
        await snapshot(page, "17-approvals-refused-and-grants", full_page=True)
        # A request decided meanwhile (in another tab) is no longer pending.
        stale = await page.request.post(
            f"{base}/console/approvals/{denied.access_request.id}",
            form={"csrf": await _csrf(page), "decision": "approve"},
        )
        assert stale.status == 409
        assert "denied" in await stale.text()
        await page.goto(f"{base}/console/approvals")
        await grant.locator("button", has_text="Revoke").click()
        await expect(page.locator(".notice")).to_contain_text("Revoked")
        await expect(page.locator("#grants tbody tr[data-grantee=dave]")).to_have_count(0)

    # Someone who is not an approver is told so, not shown a traceback.
    async with signed_in(browser, base, shop.token(READER, subject="erin")) as page:
        answer = await page.goto(f"{base}/console/approvals")
        assert answer is not None
        assert answer.status == 403
        await expect(page.locator("#pending .problem")).to_contain_text("admin.write")


async def _csrf(page: Page) -> str:
    value = await page.locator("body").get_attribute("data-csrf")
    assert value
    return value


async def test_pages_load_nothing_from_elsewhere(
    platform: Platform, browser: Browser, shop: Shop
) -> None:
    base = _base(platform)
    async with signed_in(browser, base, shop.token(WRITER)) as page:
        outside: list[str] = []
        page.on(
            "request",
            lambda request: None if request.url.startswith(base) else outside.append(request.url),
        )
        for path in ("/catalog", "/catalog/web", "/catalog/what-if", "/catalog/scenarios"):
            answer = await page.goto(f"{base}/console{path}")
            assert answer is not None
            headers = await answer.all_headers()
            assert "script-src 'self'" in headers["content-security-policy"]
            assert await page.locator("script:not([src])").count() == 0
            assert await page.locator("[style]").count() == 0
        await asyncio.sleep(0)
        assert not outside, outside
