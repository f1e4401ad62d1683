"""GraphiQL, served by the platform itself: pinned, vendored files whose integrity is checked.

The page at `/graphql` (development only; production serves no GraphiQL) loads React,
ReactDOM and GraphiQL from `/graphiql/` — files vendored from npm with
`python -m servers.facade.graphiql.vendor`, each with its SHA-384 in `assets.json` and in the
page's `integrity` attributes — and starts GraphiQL from a script of ours, under a
Content-Security-Policy that allows only this origin: no CDN, no network beyond the platform.
The page says where the bearer token goes (the Headers tab), and headers are never saved in
the browser.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import cache
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).parent
VENDOR = HERE / "vendor"
OWN = HERE / "static"
#: Where the page's files are served.
PREFIX = "/graphiql"
#: What the page may load and do: this origin only (GraphiQL styles its editors inline).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def assets() -> dict[str, dict[str, str]]:
    """The vendored files: name → package, version and integrity (`assets.json`)."""
    manifest: dict[str, dict[str, str]] = json.loads((HERE / "assets.json").read_text())
    return manifest


@cache
def page(endpoint: str = "/graphql") -> str:
    """The GraphiQL page, for the GraphQL endpoint at `endpoint`."""
    styles, scripts = [], []
    for name, facts in assets().items():
        url = html.escape(f"{PREFIX}/vendor/{name}")
        sri = html.escape(facts["integrity"])
        if name.endswith(".css"):
            styles.append(f'<link rel="stylesheet" href="{url}" integrity="{sri}">')
        else:  # deferred scripts run in document order: React, ReactDOM, GraphiQL, ours
            scripts.append(f'<script src="{url}" integrity="{sri}" defer></script>')
    page_css, start_js = _own_integrity("page.css"), _own_integrity("start.js")
    head = "\n  ".join(
        [
            *styles,
            f'<link rel="stylesheet" href="{PREFIX}/page.css" integrity="{page_css}">',
            *scripts,
            f'<script src="{PREFIX}/start.js" integrity="{start_js}" defer></script>',
        ]
    )
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>IntelGraph Maestro Conductor - GraphiQL</title>
  {head}
</head>
<body>
  <p id="token-help">Calls need a bearer token: in the <strong>Headers</strong> tab below, write
  <code>{{"Authorization": "Bearer <var>token</var>"}}</code> with a token from
  <code>conductor token mint --tenant UUID --scopes ...</code>. Headers are not saved in this
  browser; the schema and its docs need no token.</p>
  <div id="graphiql" data-endpoint="{html.escape(endpoint)}">Loading GraphiQL...</div>
</body>
</html>
"""


def _own_integrity(name: str) -> str:
    """The Subresource Integrity value of one of our own files."""
    digest = hashlib.sha384((OWN / name).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()


class _Files(StaticFiles):
    """Static files that are never sniffed into another type, and cached as long as given."""

    def __init__(self, directory: Path, max_age_s: int) -> None:
        super().__init__(directory=directory)
        self._cache = f"public, max-age={max_age_s}"

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        """The file, with our headers."""
        response = super().file_response(*args, **kwargs)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = self._cache
        return response


def routes() -> list[BaseRoute]:
    """The page's files: the vendored ones (pinned: cached a day) and ours (a minute)."""
    return [
        Mount(f"{PREFIX}/vendor", _Files(VENDOR, 86400), name="graphiql-vendor"),
        Mount(PREFIX, _Files(OWN, 60), name="graphiql"),
    ]
