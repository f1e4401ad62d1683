"""The SDK installs alone, and its examples run in that installation against a live platform.

Its wheel brings the generated contracts and the clients, and pulls grpcio, protobuf and
googleapis-common-protos, never a server dependency. Each example in clients/examples runs
with the SDK-only interpreter against `conductor serve`, with a token holding exactly the
scopes its docstring names, and must exit 0.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Served, environment, run_conductor, start_conductor
from tests.support.serving import all_permissions

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")
EXAMPLES = sorted((ROOT / "clients" / "examples").glob("*.py"))
#: What only the server needs: none of it may come with the SDK.
SERVER_ONLY = {"sqlalchemy", "igraph", "numpy", "uvicorn", "starlette", "alembic", "regopy"}
#: A scope, as the examples' docstrings quote them: `billing.read`.
SCOPE = re.compile(r"`([a-z]+(?:\.[a-z]+)+)`")

pytestmark = pytest.mark.e2e


def _run(*command: str | Path) -> str:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a virtual environment holding the SDK's wheel and nothing else."""
    root = tmp_path_factory.mktemp("sdk-only")
    wheels, venv = root / "wheels", root / "venv"
    _run(UV, "build", "--wheel", "--package", "intelgraph-conductor-sdk", "-o", wheels, ROOT)
    (wheel,) = wheels.glob("intelgraph_conductor_sdk-*.whl")
    _run(UV, "venv", "-q", "-p", sys.executable, venv)
    python = venv / "bin" / "python"
    _run(UV, "pip", "install", "-q", "--python", python, wheel)
    return python


def test_the_sdk_installs_alone_and_imports(sdk_python: Path) -> None:
    listed = _run(
        sdk_python,
        "-c",
        "import importlib.metadata as m, intelgraph.sdk, intelgraph.sdk.access;"
        "from intelgraph.sdk import Client, AsyncClient;"
        "print('\\n'.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))",
    ).split()
    assert "intelgraph-conductor-sdk" in listed
    assert {"grpcio", "protobuf", "googleapis-common-protos"} <= set(listed)
    assert not SERVER_ONLY & set(listed), sorted(SERVER_ONLY & set(listed))
    assert "intelgraph-conductor" not in listed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    """`conductor serve` on free ports, and the directory whose keys sign its tokens."""
    home = tmp_path_factory.mktemp("live")
    served = start_conductor(home, "--grpc-port", "0", "--http-port", "0")
    yield served, home
    served.close()


def _mint(home: Path, tenant: str, scopes: list[str], subject: str) -> str:
    minted = run_conductor(
        home, "token", "mint", "--tenant", tenant, "--scopes", ",".join(scopes), "--sub", subject
    )
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def _scopes(example: Path) -> list[str]:
    """The scopes the example's docstring says its token needs."""
    docstring = ast.get_docstring(ast.parse(example.read_text())) or ""
    (line,) = [line for line in docstring.splitlines() if line.startswith("Scopes:")]
    return sorted(set(SCOPE.findall(line)))


def test_every_example_names_scopes_the_contracts_declare() -> None:
    assert len(EXAMPLES) >= 4
    declared = set(all_permissions())
    for example in EXAMPLES:
        assert set(_scopes(example)) <= declared, example.name


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_the_example_runs_with_only_the_sdk_against_a_live_platform(
    example: Path, sdk_python: Path, live: tuple[Served, Path]
) -> None:
    served, home = live
    tenant = str(uuid.uuid4())
    env = environment(
        home,
        CONDUCTOR_TARGET=served.grpc,
        CONDUCTOR_PLAINTEXT="1",
        CONDUCTOR_TOKEN=_mint(home, tenant, _scopes(example), "example-user"),
        CONDUCTOR_APPROVER_TOKEN=_mint(home, tenant, ["admin.write"], "example-approver"),
    )
    done = subprocess.run(
        [str(sdk_python), str(example)],
        env=env,
        cwd=example.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), "an example says what it did"
    print(done.stdout)
