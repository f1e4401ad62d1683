"""Vendor GraphiQL's files from the npm registry: pinned versions, their hashes recorded.

`python -m servers.facade.graphiql.vendor` (a developer's step when upgrading, never run by
the platform) fetches each package with `npm pack` — which checks the tarball against the
registry's own integrity hash — copies the files the page loads and the packages' licenses into
`vendor/`, and writes `assets.json`: for each file its package, version and SHA-384, which the
page puts in `integrity` attributes (the browser refuses a file that differs) and a test checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
VENDOR = HERE / "vendor"
MANIFEST = HERE / "assets.json"

#: (package, version, [(file in the package, name served)]), loaded in this order.
PACKAGES = (
    ("react", "18.3.1", [("umd/react.production.min.js", "react.production.min.js")]),
    ("react-dom", "18.3.1", [("umd/react-dom.production.min.js", "react-dom.production.min.js")]),
    (
        "graphiql",
        "3.8.3",
        [("graphiql.min.css", "graphiql.min.css"), ("graphiql.min.js", "graphiql.min.js")],
    ),
)


def integrity(data: bytes) -> str:
    """The Subresource Integrity value of `data` (SHA-384)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def main() -> int:
    """Fetch, copy and record every file."""
    VENDOR.mkdir(exist_ok=True)
    manifest: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for package, version, files in PACKAGES:
            packed = subprocess.run(  # noqa: S603 - pinned names and versions, not input
                ["npm", "pack", f"{package}@{version}", "--json"],  # noqa: S607 - the developer's npm
                cwd=scratch,
                check=True,
                capture_output=True,
                text=True,
            )
            tarball = Path(scratch) / json.loads(packed.stdout)[0]["filename"]
            with tarfile.open(tarball) as archive:
                for inside, served in [*files, ("LICENSE", f"{package}.LICENSE")]:
                    member = archive.extractfile(f"package/{inside}")
                    assert member is not None, inside
                    data = member.read()
                    (VENDOR / served).write_bytes(data)
                    if not served.endswith(".LICENSE"):
                        manifest[served] = {
                            "package": package,
                            "version": version,
                            "integrity": integrity(data),
                        }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    sys.stdout.write(f"vendored {', '.join(manifest)} into {VENDOR}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
