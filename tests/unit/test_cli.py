"""The operator commands: `conductor keys`, `token mint`, `scopes`; every error is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
        (["--tenant", "acme"], "'acme' is not a valid UUID"),
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
    assert main(["token", "mint", "--tenant", TENANT, "--scopes", "rag.read", "--ttl", "2h"]) == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800)]
)
def test_lifetimes(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


#: Bad command lines, each with the flag (or argument) its one line must name.
BAD_VALUES = [
    (["demo", "seed", "--tenant", TENANT, "--nodes", "-5"], "'--nodes'"),
    (["demo", "seed", "--tenant", "not-a-uuid"], "'--tenant'"),
    (["demo", "seed", "--tenant", TENANT, "--edges", "many"], "'--edges'"),
    (["demo", "seed", "--nodes", "0"], "'--nodes'"),
    (["acceptance", "--lane", "nope"], "'--lane'"),
    (["acceptance", "--target", "127.0.0.1"], "'--target'"),
    (["acceptance", "--target", "127.0.0.1:70000"], "'--target'"),
    (["acceptance", "--target", "127.0.0.1:1", "--http-url", "ftp://x"], "'--http-url'"),
    (["evidence", "verify", "no-such-dir"], "'BUNDLE'"),
    (["evidence", "build"], "'--out'"),
    (
        ["token", "mint", "--tenant", TENANT, "--scopes", "catalog.raed"],
        "did you mean catalog.read",
    ),
    (["token", "mint", "--tenant", TENANT, "--scopes", "rag.read,nope.x"], "'nope.x'"),
    (["token", "mint", "--tenant", TENANT, "--scopes", "rag.read", "--sub", "a\nb"], "'--sub'"),
    (["token", "mint", "--tenant", TENANT, "--scopes", "rag.read", "--ttl", "0s"], "'--ttl'"),
    (["serve", "--grpc-port", "70000"], "--grpc-port"),
    (["serve", "--grpc-port", "fifty"], "'--grpc-port'"),
    (["serve", "--log-format", "xml"], "'--log-format'"),
    (["serve", "--services", "billing,nope"], "--services"),
    (["serve", "--database-url", "mysql://x"], "--database-url"),
    (["serve", "--trace-sample-ratio", "2"], "--trace-sample-ratio"),
    (["serve", "--bogus"], "--bogus"),
    (["migrate", "--database-url", "postgresql+psycopg://h:port/db"], "--database-url"),
    (["keys", "rotate", "--key-algorithm", "RS256"], "'--key-algorithm'"),
    (["keys", "spin"], "spin"),
    (["audit", "export", "--tenant", "x"], "'--tenant'"),
    (["billing", "verify", "/no/such/file.json"], "DOCUMENT"),
    (["rag", "verify", "/no/such/manifest.json"], "MANIFEST"),
    (["completion", "powershell"], "SHELL"),
    (["nonsense"], "nonsense"),
    (["scopes", "--policy-dir", "/no/such/dir"], "--policy-dir"),
    (["serve", "--var-dir", ""], "--var-dir"),
]


@pytest.mark.parametrize(("argv", "named"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_command_line_is_one_line_naming_the_flag_and_exit_2(
    keys_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    main(["keys", "rotate"])
    capsys.readouterr()
    assert main(argv) == 2
    printed = capsys.readouterr()
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1, printed.err
    assert lines[0].startswith("conductor")
    assert named in lines[0]
    assert "Traceback" not in printed.err
    assert printed.out == ""


def test_a_bad_variable_is_named_like_its_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONDUCTOR_GRPC_PORT", "fifty")
    assert main(["serve"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "CONDUCTOR_GRPC_PORT / --grpc-port" in line


def test_help_shows_defaults_and_variables_and_version_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "--grpc-port" in shown
    assert "default: 50051; env: CONDUCTOR_GRPC_PORT" in " ".join(shown.split())
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("conductor, version ")


def test_scopes_list_what_each_allows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scopes", "--json"]) == 0
    listed = {entry["scope"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert "/intelgraph.billing.v1.BillingService/GetInvoice" in listed["billing.read"]["rpcs"]
    assert listed["billing.write"]["approvals"] == 2
    assert not listed["admin.write"]["requestable"]
    assert main(["scopes"]) == 0
    assert "Billing.GetInvoice" in capsys.readouterr().out


def test_completion_scripts_complete_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "_CONDUCTOR_COMPLETE" in script
    assert "complete " in script


def test_a_reader_that_goes_away_ends_the_command_quietly(keys_dir: Path) -> None:
    main(["keys", "rotate"])
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte (as `| head -c 40` after 40)
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("conductor")), "scopes", "--json"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, "")


def test_workers_on_a_schema_behind_stop_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("conductor")),
            "serve",
            "--workers", "2",
            "--grpc-port", "59001",
            "--http-port", "59002",
            "--no-auto-migrate",
            "--var-dir", str(tmp_path),
            "--log-format", "console",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "conductor cannot start" in done.stderr
    assert "conductor migrate" in done.stderr


def test_a_file_that_is_not_a_manifest_is_named_not_dumped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "backup.tar.gz"
    binary.write_bytes(bytes(range(256)) * 64)
    assert main(["rag", "verify", str(binary), "--jwks", str(binary)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "not UTF-8 text" in line
    assert len(line) < 300


def test_an_unknown_revision_and_an_unusable_key_directory_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--to", "nonexistent", "--var-dir", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "'--to'" in line
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["keys", "rotate", "--keys-dir", str(blocker / "keys")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("conductor keys rotate: cannot use the key directory")


def test_migrate_check_only_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--check", "--var-dir", str(tmp_path / "var")]) == 1
    assert "no database at" in capsys.readouterr().out
    assert not (tmp_path / "var").exists()


def test_acceptance_against_nothing_fails_at_once_naming_what_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--target", "127.0.0.1:1", "--http-url", "http://127.0.0.1:1"]
    assert main(["acceptance", *flags, "--var-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "cannot mint tokens" in error
    assert "nothing answers gRPC at 127.0.0.1:1 (--target)" in error
    assert "--http-url" in error
    assert not (tmp_path / "acceptance").exists()
