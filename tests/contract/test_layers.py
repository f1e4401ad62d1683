"""The layering contracts (.importlinter) hold, and each catches the violation it names.

A copy of our packages gets one planted import per contract; lint-imports must
report every contract broken. The untouched tree is checked by `make lint`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: One import per contract, each breaking it (and only the arrow named).
PLANTED = {
    "core/_planted.py": "import interceptors\n",
    "interceptors/_planted.py": "import servers.app\n",
    "clients/intelgraph/sdk/_planted.py": "import core.errors\n",
    "servers/billing/_planted.py": "from servers.access import store\n",
    "servers/edge/_planted.py": "import servers.app\n",
    "servers/db/_planted.py": "import servers.analytics.store\n",
    "servers/facade/_planted.py": "import sqlalchemy\n",
    "servers/acceptance/_planted.py": "import servers.billing.store\n",
    # Appended to a module of the composition root: an internal of a service.
    "servers/workers.py": "import servers.access.store\n",
}


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(str(folder) for folder in (root, root / "clients", ROOT / "gen"))
    environment = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / ".importlinter")],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_contract_catches_a_planted_violation(tmp_path: Path) -> None:
    for package in ("core", "interceptors", "servers", "clients"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for path, source in PLANTED.items():
        planted = tmp_path / path
        planted.write_text((planted.read_text() if planted.exists() else "") + source)
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    report = " ".join(result.stdout.split())  # contract names wrap in the report
    assert "Contracts: 0 kept, 10 broken." in report, report
    for path, source in PLANTED.items():
        module = path.removesuffix(".py").removeprefix("clients/").replace("/", ".")
        assert module in report, f"{module} ({source.strip()}) was not reported"
