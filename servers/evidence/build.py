"""Building a bundle: collect the evidence from a deployment, then render and seal it.

Two steps, so a bundle can be rendered again from the data it holds:

- `collect` runs the acceptance packs (raw results under `acceptance/`), takes the
  console's screenshots (`screenshots/`), and copies the load and chaos results
  given (`load/`, `chaos/`); `collection.json` says what was and was not collected.
- `render` copies that data into the bundle, draws the plots (`plots/`), writes
  `index.html`, and seals it (`keys.jwks.json`, `manifest.intoto.json`).

Rendering is reproducible: two renders of the same data differ only in the
statement's `built_at` and the signature.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from servers.acceptance import LANES, RESULTS_FILE, Target, run_lanes
from servers.evidence.manifest import BundleSigner, seal
from servers.evidence.page import write_index
from servers.evidence.plots import render_plots

if TYPE_CHECKING:
    from playwright.async_api import Browser

#: What `collect` writes, which `render` copies into the bundle.
DATA_DIRS = ("acceptance", "screenshots", "load", "chaos")
COLLECTION_FILE = "collection.json"
#: The console pages shown: name → (section showcased by a lane, path, scopes to read it).
PAGES: Mapping[str, tuple[str, str, tuple[str, ...]]] = {
    "catalog": ("catalog", "/console/catalog", ("catalog.read",)),
    "scenarios": ("catalog", "/console/catalog/scenarios", ("catalog.read",)),
    "documents": ("documents", "/console/documents", ("rag.read",)),
    "approvals": ("approvals", "/console/approvals", ("admin.write",)),
}
#: How long one page may take to load, in milliseconds.
SCREENSHOT_TIMEOUT_MS = 15_000
#: Where Debian's headless Chromium is, unless CONDUCTOR_CHROMIUM says otherwise.
CHROMIUM_NAMES = ("chromium-headless-shell", "chromium")


@dataclass(frozen=True)
class Inputs:
    """Results made elsewhere that the bundle carries: `make load` and `make chaos` output."""

    load: Path | None = None
    chaos: Path | None = None


def chromium() -> str | None:
    """The headless Chromium to drive (CONDUCTOR_CHROMIUM, else one on PATH)."""
    named = os.environ.get("CONDUCTOR_CHROMIUM")
    if named:
        return named
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


async def screenshots(
    target: Target, showcase: Mapping[str, uuid.UUID], out: Path
) -> dict[str, Any]:
    """Screenshots of the console's pages, each signed in as the tenant a lane showcased.

    Returns:
        {"taken": {page: file}, "not_taken": {page: why}}.
    """
    taken: dict[str, str] = {}
    not_taken: dict[str, str] = {}
    browser_path = chromium()
    try:
        from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - optional
        from playwright.async_api import async_playwright  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the dev group has it
        reason = "playwright is not installed (pip install 'intelgraph-conductor[evidence]')"
        return {"taken": {}, "not_taken": dict.fromkeys(PAGES, reason)}
    if browser_path is None:
        reason = "no headless Chromium (apt-get install chromium-headless-shell)"
        return {"taken": {}, "not_taken": dict.fromkeys(PAGES, reason)}
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=browser_path)
        try:
            for name, (section, path, scopes) in PAGES.items():
                tenant = showcase.get(section)
                if tenant is None:
                    not_taken[name] = f"no lane of this run filled the {section} section"
                    continue
                token = target.minter(tenant, scopes, subject="evidence", ttl_s=300)
                try:
                    problem = await _screenshot(browser, target.http_url, path, token, out / name)
                except PlaywrightError as error:  # the console cannot be reached, or hangs
                    problem = str(error).splitlines()[0][:300]
                if problem:
                    not_taken[name] = problem
                else:
                    taken[name] = f"{name}.png"
        finally:
            await browser.close()
    return {"taken": taken, "not_taken": not_taken}


async def _screenshot(browser: Browser, base: str, path: str, token: str, out: Path) -> str:
    """Sign in with `token`, open `path`, save `<out>.png`; why not, or "" when taken."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = await context.new_page()
        page.set_default_timeout(SCREENSHOT_TIMEOUT_MS)
        await page.goto(f"{base}/console/sign-in")
        await page.fill("#token", token)
        await page.click("form[action$='/sign-in'] button")
        await page.wait_for_load_state("networkidle")
        response = await page.goto(f"{base}{path}")
        status = response.status if response is not None else 0
        landed = urlsplit(page.url).path
        if status != 200:
            return f"GET {path} answered HTTP {status}"
        if landed != path:  # e.g. sent back to the sign-in page: the token was refused
            return f"GET {path} ended on {landed} (signing in with the run's token failed)"
        await page.screenshot(path=f"{out}.png", full_page=True)
        return ""
    finally:
        await context.close()


def _copy_input(source: Path | None, out: Path, what: str) -> dict[str, Any]:
    if source is None:
        return {"included": False, "why": f"no {what} results were given"}
    if not source.is_file():
        return {"included": False, "why": f"{source} does not exist"}
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out / source.name)
    return {"included": True, "file": f"{out.name}/{source.name}"}


async def collect(
    target: Target,
    data: Path,
    *,
    lanes: Sequence[str] = LANES,
    quick: bool = False,
    demo_tenant: uuid.UUID | None = None,
    inputs: Inputs = Inputs(),
    take_screenshots: bool = True,
) -> dict[str, Any]:
    """Run the packs against `target` and gather everything a bundle holds into `data`.

    Returns:
        What was collected (also written to `data/collection.json`).
    """
    showcase: dict[str, uuid.UUID] = {}
    checks = await run_lanes(
        target,
        data / "acceptance",
        lanes,
        quick=quick,
        demo_tenant=demo_tenant,
        showcase=showcase,
    )
    shots = (
        await screenshots(target, showcase, data / "screenshots")
        if take_screenshots
        else {"taken": {}, "not_taken": dict.fromkeys(PAGES, "not asked for (--no-screenshots)")}
    )
    collection = {
        "target": target.description,
        "lanes": list(lanes),
        "quick": quick,
        "passed": sum(1 for check in checks if check.passed),
        "failed": sum(1 for check in checks if not check.passed),
        "screenshots": shots,
        "load": _copy_input(inputs.load, data / "load", "load"),
        "chaos": _copy_input(inputs.chaos, data / "chaos", "chaos"),
    }
    _write_json(data / COLLECTION_FILE, collection)
    return collection


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


class RenderFailed(Exception):
    """The collected data could not be rendered into a bundle (nothing is left at `out`)."""


def render(data: Path, out: Path, signer: BundleSigner, built_at: datetime, *, version: str) -> str:
    """Render the bundle from collected `data` into `out` (which must not exist) and seal it.

    Returns:
        The sha256 of the signed statement.

    Raises:
        FileExistsError: `out` exists.
        RenderFailed: `data` is not collected evidence of the expected shape (what had
            been written to `out` is removed).
    """
    out.mkdir(parents=True)
    try:
        return _render(data, out, signer, built_at, version)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        shutil.rmtree(out, ignore_errors=True)
        raise RenderFailed(
            f"{data} does not hold collected evidence that can be rendered "
            f"({type(error).__name__}: {error})"[:500]
        ) from None


def _render(data: Path, out: Path, signer: BundleSigner, built_at: datetime, version: str) -> str:
    collection = json.loads((data / COLLECTION_FILE).read_text())
    results = json.loads((data / "acceptance" / RESULTS_FILE).read_text())
    checks = results["checks"]
    about = {
        "platform_version": version,
        "target": collection["target"],
        "lanes": collection["lanes"],
        "checks": {"passed": sum(1 for c in checks if c["passed"]), "total": len(checks)},
    }
    shutil.copyfile(data / COLLECTION_FILE, out / COLLECTION_FILE)
    for name in DATA_DIRS:
        if (data / name).is_dir():
            shutil.copytree(data / name, out / name)
    plots = render_plots(out / "acceptance" / "raw", out / "plots")
    write_index(out, collection, results, plots, version=version)
    return seal(out, signer, built_at, about)
