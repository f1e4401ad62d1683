"""A bundle's index.html renders offline in a real browser: every image loads, nothing remote."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from servers.evidence import BundleSigner, render
from tests.support.browser import headless_chromium
from tests.support.evidence import sample_data

ARTIFACTS = Path(os.environ.get("CONDUCTOR_TEST_ARTIFACTS", "test-artifacts")) / "evidence"


async def test_the_index_renders_offline_with_every_image(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    render(
        sample_data(tmp_path / "data"),
        bundle,
        BundleSigner(tmp_path / "keys"),
        datetime.now(UTC),
        version="0.1.0",
    )
    requested: list[str] = []
    async with headless_chromium() as browser:
        context = await browser.new_context(offline=True)
        page = await context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        await page.goto((bundle / "index.html").as_uri())
        await page.wait_for_load_state("load")
        title = await page.title()
        broken = await page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.getAttribute('src'))"
        )
        images = await page.evaluate("document.images.length")
        headings = await page.evaluate("[...document.querySelectorAll('h2')].map(h => h.id)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "index-sample.png"), full_page=True)
        await context.close()
    assert title.startswith("Evidence bundle v18")
    assert headings == ["verify", "acceptance", "plots", "screenshots", "load", "files"]
    assert images == 4 + 1  # four plots, one screenshot
    assert broken == ["screenshots/catalog.png"]  # the sample's screenshot is not a real PNG
    assert all(url.startswith("file://") for url in requested), requested
