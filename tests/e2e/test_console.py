"""The web console in a real headless browser: sign in, upload with a cut, read, download.

Runs Debian's chromium-headless-shell through Playwright (`tests.support.browser`).
Screenshots of every page land in `$CONDUCTOR_TEST_ARTIFACTS/console/` (default
`test-artifacts/`), which CI keeps. Without the browser the test is skipped,
saying so, except under CI=true.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Route, expect

from servers.app import Platform
from tests.support.browser import headless_chromium, sign_in, snapshot
from tests.support.serving import Minter, serving

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

#: About 230 KB of Markdown: two tus pieces, so a cut lands mid-upload.
NOTES = "\n\n".join(
    f"## Finding {n}\n\nThe replica in zone {n % 7} fell behind by {n} seconds during the "
    f"upgrade. Operators paused the rollout and drained the queue. Contact the on-call "
    f"engineer at oncall{n % 3}@example.com for the timeline."
    for n in range(1000)
)
DOCUMENT = f"# Storage incident notes\n\n{NOTES}\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("console"), services="rag,access") as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with headless_chromium() as launched:
        yield launched


async def test_a_person_uploads_reads_and_downloads(
    platform: Platform, browser: Browser, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{platform.http_port}"
    minter = Minter(platform.settings)
    tenant = uuid.uuid4()
    token = minter(["rag.read", "rag.write"], tenant=tenant)
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()

    await page.goto(f"{base}/console")
    await snapshot(page, "01-sign-in")
    await sign_in(page, base, token)
    await expect(page).to_have_url(re.compile(r"/console/documents$"))
    cookies = {cookie["name"]: cookie for cookie in await context.cookies()}
    assert cookies["conductor_session"]["httpOnly"]
    assert cookies["conductor_session"]["sameSite"] == "Strict"
    await snapshot(page, "02-documents-empty")

    cut = {"done": False}

    async def cut_the_second_piece(route: Route) -> None:
        request = route.request
        resumed = request.headers.get("upload-offset") not in (None, "0")
        if request.method == "PATCH" and resumed and not cut["done"]:
            cut["done"] = True
            await route.abort("connectionreset")
            return
        await route.continue_()

    await page.route("**/files/**", cut_the_second_piece)
    source = tmp_path / "incident-notes.md"
    source.write_text(DOCUMENT)
    await page.set_input_files("#file", str(source))
    await page.click("#start-upload")
    await expect(page).to_have_url(re.compile(r"/console/documents/[0-9a-f-]{36}"), timeout=30_000)
    assert cut["done"], "the upload was never cut"
    await expect(page.locator("h1")).to_have_text("incident-notes.md")
    await snapshot(page, "03-document-support")

    # The summary's lineage links land on their chunk, highlighted in the text.
    first_link = page.locator("#summary a.lineage").first
    anchor = (await first_link.get_attribute("href") or "").lstrip("#")
    await first_link.click()
    await expect(page).to_have_url(re.compile(f"#{anchor}$"))
    highlighted = await page.locator(f"#{anchor}").evaluate(
        "element => getComputedStyle(element).backgroundColor"
    )
    assert highlighted not in ("rgba(0, 0, 0, 0)", "transparent")
    chunk_text = await page.locator("#chunks").inner_text()
    assert "@example.com" not in chunk_text
    assert "[EMAIL]" in chunk_text

    # Another purpose: the analytics template allows no chunk export.
    await page.select_option("#purpose", "analytics")
    await expect(page).to_have_url(re.compile(r"purpose=analytics"))
    exports = await page.locator("#downloads [data-export]").all_inner_texts()
    assert exports == ["summary", "manifest"]
    await snapshot(page, "04-document-analytics")

    async with page.expect_download() as downloading:
        await page.click("#downloads [data-export=summary]")
    download = await downloading.value
    saved = tmp_path / "summary.md"
    await download.save_as(saved)
    assert saved.read_text().startswith("# Summary of document ")
    async with page.expect_download() as downloading:
        await page.click("#downloads [data-export=manifest]")
    manifest = tmp_path / "manifest.json"
    await (await downloading.value).save_as(manifest)
    assert "application/vnd.intelgraph.rag-manifest+json" in manifest.read_text()

    # The list shows it; another tenant's browser does not.
    await page.goto(f"{base}/console/documents")
    await expect(page.locator("#documents tbody tr")).to_have_count(1)
    await snapshot(page, "05-documents")
    document_url = await page.locator("#documents tbody a").get_attribute("href")
    other = await browser.new_context()
    stranger = await other.new_page()
    await sign_in(stranger, base, minter(["rag.read"], tenant=uuid.uuid4()))
    await expect(stranger.locator("#documents tbody")).to_contain_text("No documents yet.")
    answer = await stranger.goto(f"{base}{document_url}")
    assert answer is not None
    assert answer.status == 404
    await other.close()
    await context.close()


async def test_a_token_that_may_not_read_sees_a_refusal_not_data(
    platform: Platform, browser: Browser
) -> None:
    base = f"http://127.0.0.1:{platform.http_port}"
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, base, Minter(platform.settings)(["catalog.read"], tenant=uuid.uuid4()))
    await expect(page.locator(".problem")).to_contain_text("may not read")
    # Only the sections of the services served here: no catalog without the Catalog.
    sections = page.locator("#sections a")
    assert await sections.evaluate_all("links => links.map(a => a.dataset.section)") == [
        "documents",
        "approvals",
    ]
    answer = await page.goto(f"{base}/console/catalog")
    assert answer is not None
    assert answer.status == 404
    await expect(page.locator("h1")).to_have_text("Not found")
    await page.goto(f"{base}/console/sign-in")
    await page.fill("#token", "not-a-token")
    await page.click("form[action$='/sign-in'] button")
    await expect(page.locator(".problem")).to_be_visible()
    await snapshot(page, "06-sign-in-refused")
    await context.close()
