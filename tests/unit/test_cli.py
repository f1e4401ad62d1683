"""The operator commands: `conductor keys` and `conductor token mint`."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from interceptors import keys
from servers.cli import main, parse_ttl

TENANT = "0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e"


@pytest.fixture
def keys_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "keys"
    monkeypatch.setenv("CONDUCTOR_KEYS_DIR", str(directory))
    return directory


def test_keys_rotate_list_and_retire(keys_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list"]) == 1
    assert "conductor keys rotate" in capsys.readouterr().err
    assert main(["keys", "rotate"]) == 0
    first = keys.load(keys_dir).current
    assert main(["keys", "rotate", "--key-algorithm", "ES256"]) == 0
    listed = capsys.readouterr().out
    second = keys.load(keys_dir)
    assert f"previous {first.kid} EdDSA" in listed
    assert f"current  {second.current.kid} ES256" in listed
    assert main(["keys", "retire"]) == 0
    assert keys.load(keys_dir).previous is None


def test_token_mint_prints_a_token_for_the_tenant_and_scopes(
    keys_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keys", "rotate"])
    capsys.readouterr()
    assert main(["token", "mint", "--tenant", TENANT, "--scopes", "catalog.read, rag.read",
                 "--ttl", "15m", "--sub", "ops-bot"]) == 0  # fmt: skip
    token = capsys.readouterr().out.strip()
    key = keys.load(keys_dir).current
    claims = jwt.decode(
        token, key.public_key, algorithms=["EdDSA"], audience="intelgraph",
        issuer="intelgraph-conductor",
    )  # fmt: skip
    assert claims["tenant"] == TENANT
    assert claims["scopes"] == ["catalog.read", "rag.read"]
    assert claims["sub"] == "ops-bot"
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(token)["kid"] == key.kid


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ttl", "2h"], "exceeds the maximum of 3600s"),
        (["--ttl", "soon"], "not a lifetime"),
        (["--tenant", "acme"], "badly formed hexadecimal UUID string"),
    ],
)
def test_token_mint_refuses_bad_requests(
    keys_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    main(["keys", "rotate"])
    base = {"--tenant": TENANT, "--scopes": "catalog.read", "--ttl": "15m"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = ["token", "mint", *[part for pair in base.items() for part in pair]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_maximum_ttl_is_configurable(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keys", "rotate"])
    monkeypatch.setenv("CONDUCTOR_TOKEN_MAX_TTL", "86400")
    assert main(["token", "mint", "--tenant", TENANT, "--scopes", "x", "--ttl", "2h"]) == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800)]
)
def test_lifetimes(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds
