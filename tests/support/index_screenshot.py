"""Open a bundle's index.html offline in headless Chromium; fail on a broken image; screenshot it.

`python -m tests.support.index_screenshot BUNDLE OUT.png` (make evidence runs it where the
browser is installed, so CI keeps a picture of the bundle it built).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from playwright.async_api import async_playwright


async def snapshot(bundle: Path, out: Path) -> list[str]:
    """Screenshot `bundle`'s index to `out`; the images that did not load, and remote requests."""
    chromium = shutil.which("chromium-headless-shell")
    if chromium is None:
        return ["no chromium-headless-shell"]
    requested: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        try:
            context = await browser.new_context(
                offline=True, viewport={"width": 1280, "height": 900}
            )
            page = await context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            await page.goto((bundle / "index.html").resolve().as_uri())
            await page.wait_for_load_state("load")
            broken: list[str] = await page.evaluate(
                "[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                ".map(i => i.getAttribute('src'))"
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out), full_page=True)
        finally:
            await browser.close()
    remote = [url for url in requested if not url.startswith("file://")]
    return [f"image did not load: {src}" for src in broken] + [f"remote: {u}" for u in remote]


def main() -> int:
    """Exit 1 when an image is broken or anything is fetched from outside the bundle."""
    bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
    problems = asyncio.run(snapshot(bundle, out))
    for problem in problems:
        print(f"index: {problem}", file=sys.stderr)
    if not problems:
        print(f"index.html rendered offline, every image loaded: {out}")
    return 1 if problems and problems != ["no chromium-headless-shell"] else 0


if __name__ == "__main__":
    sys.exit(main())
