"""GraphiQL renders and runs a query in a real headless browser with no network but the platform.

Every file comes from the platform, checked against its recorded hash; a request anywhere
else fails the test, and so does a Content-Security-Policy violation.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import ConsoleMessage, Request, Route, expect

from servers.app import Platform
from servers.facade import graphiql
from tests.support.browser import headless_chromium, snapshot
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

TENANT = uuid.UUID("2c5e8a1b-7d3f-4e6a-9b0c-1d2e3f4a5b6c")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("graphiql"), services="access") as running:
        yield running


async def test_the_vendored_files_are_the_ones_recorded() -> None:
    for name, facts in graphiql.assets().items():
        data = (graphiql.VENDOR / name).read_bytes()
        digest = base64.b64encode(hashlib.sha384(data).digest()).decode()
        assert facts["integrity"] == f"sha384-{digest}", name
        assert (graphiql.VENDOR / f"{facts['package']}.LICENSE").exists()


async def test_graphiql_renders_and_runs_a_query_offline(
    platform: Platform, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{platform.http_port}"
    token = Minter(platform.settings)([], tenant=TENANT, subject="alice")
    elsewhere: list[str] = []
    problems: list[str] = []

    async def only_the_platform(route: Route, request: Request) -> None:
        if request.url.startswith(base):
            await route.continue_()
        else:
            elsewhere.append(request.url)
            await route.abort("internetdisconnected")

    def watch(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    async with headless_chromium() as browser:
        context = await browser.new_context()
        await context.route("**/*", only_the_platform)
        page = await context.new_page()
        page.on("console", watch)
        await page.goto(f"{base}/graphql", wait_until="networkidle")
        await expect(page.locator(".graphiql-container")).to_be_visible(timeout=15_000)
        await expect(page.locator("#token-help")).to_contain_text("Headers")
        headers = page.locator(".graphiql-editor-tool .graphiql-editor").last
        await headers.click()
        await page.keyboard.press("Control+A")
        await page.keyboard.type(f'{{"Authorization": "Bearer {token}"}}')
        query = page.locator(".graphiql-query-editor .CodeMirror").first
        await query.click()
        await page.keyboard.press("Control+A")
        await page.keyboard.type("{ caller { subject tenantId } }")
        await page.locator(".graphiql-execute-button").click()
        await expect(page.locator(".graphiql-response")).to_contain_text('"alice"', timeout=10_000)
        await snapshot(page, "graphiql")
        stored = await page.evaluate("JSON.stringify(window.localStorage)")
        await context.close()
    assert elsewhere == []
    assert problems == []
    assert token not in stored  # headers are never saved in the browser


async def test_production_serves_no_graphiql(tmp_path: Path) -> None:
    async with (
        serving(tmp_path, services="access", environment="production") as production,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{production.http_port}") as http,
    ):
        page = await http.get("/graphql", headers={"accept": "text/html"})
        asset = await http.get("/graphiql/vendor/graphiql.min.js")
    assert (page.status_code, asset.status_code) == (404, 404)


async def test_every_file_of_the_page_is_pinned_and_never_sniffed(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        page = (await http.get("/graphql", headers={"accept": "text/html"})).text
        for path in (
            "/graphiql/start.js",
            "/graphiql/page.css",
            "/graphiql/vendor/react.production.min.js",
        ):
            answer = await http.get(path)
            assert answer.status_code == 200
            assert answer.headers["x-content-type-options"] == "nosniff"
            digest = base64.b64encode(hashlib.sha384(answer.content).digest()).decode()
            assert f'src="{path}" integrity="sha384-{digest}"' in page or (
                f'href="{path}" integrity="sha384-{digest}"' in page
            )
