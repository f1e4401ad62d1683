"""The SDK installs alone: its wheel brings the generated contracts and the clients, and pulls
grpcio, protobuf and googleapis-common-protos, never a server dependency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")
#: What only the server needs: none of it may come with the SDK.
SERVER_ONLY = {"sqlalchemy", "igraph", "numpy", "uvicorn", "starlette", "alembic", "regopy"}

pytestmark = pytest.mark.e2e


def _run(*command: str | Path) -> str:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_sdk_installs_alone_and_imports(tmp_path: Path) -> None:
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run(UV, "build", "--wheel", "--package", "intelgraph-conductor-sdk", "-o", wheels, ROOT)
    (wheel,) = wheels.glob("intelgraph_conductor_sdk-*.whl")
    _run(UV, "venv", "-q", "-p", sys.executable, venv)
    python = venv / "bin" / "python"
    _run(UV, "pip", "install", "-q", "--python", python, wheel)
    listed = _run(
        python,
        "-c",
        "import importlib.metadata as m, intelgraph.sdk, intelgraph.sdk.access;"
        "from intelgraph.sdk import Client, AsyncClient;"
        "print('\\n'.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))",
    ).split()
    assert "intelgraph-conductor-sdk" in listed
    assert {"grpcio", "protobuf", "googleapis-common-protos"} <= set(listed)
    assert not SERVER_ONLY & set(listed), sorted(SERVER_ONLY & set(listed))
    assert "intelgraph-conductor" not in listed
