"""Driving the web console in a real headless browser: the browser, signing in, screenshots.

Debian's chromium-headless-shell runs through Playwright (never Playwright's
own browser download). Screenshots land in `$CONDUCTOR_TEST_ARTIFACTS/console/`
(default `test-artifacts/console/`), which CI keeps. Without the browser a test
is skipped, saying so, except under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = os.environ.get("CONDUCTOR_TEST_CHROMIUM") or shutil.which("chromium-headless-shell")
ARTIFACTS = Path(os.environ.get("CONDUCTOR_TEST_ARTIFACTS", "test-artifacts")) / "console"


@contextlib.asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    """The system's headless Chromium under Playwright (the test is skipped without it)."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs chromium-headless-shell (.ci/run installs it)")
        pytest.skip("no chromium-headless-shell: apt-get install chromium-headless-shell")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


async def snapshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Save a screenshot of `page` as `<ARTIFACTS>/<name>.png`."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


async def sign_in(page: Page, base: str, token: str) -> None:
    """Sign in to the console at `base` with `token`, from its sign-in page."""
    await page.goto(f"{base}/console")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    await page.fill("#token", token)
    await page.click("form[action$='/sign-in'] button")
