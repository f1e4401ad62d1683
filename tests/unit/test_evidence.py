"""The evidence bundle offline: reproducible renders, sealing, verification refusing tampering."""

from __future__ import annotations

import base64
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from servers.cli import main
from servers.evidence import BundleInvalid, BundleSigner, RenderFailed, render, verify_bundle
from servers.evidence.manifest import ENVELOPE_FILE, JWKS_FILE, PAYLOAD_TYPE
from servers.evidence.plots import burn_rates
from tests.support.evidence import sample_data

BUILT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Collected evidence as `collect` leaves it (made up, but of the real shapes)."""
    return sample_data(tmp_path / "data")


@pytest.fixture
def signer(tmp_path: Path) -> BundleSigner:
    return BundleSigner(tmp_path / "keys")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _statement(root: Path) -> dict[str, Any]:
    envelope = json.loads((root / ENVELOPE_FILE).read_text())
    assert envelope["payloadType"] == PAYLOAD_TYPE
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


def test_two_renders_of_the_same_data_differ_only_in_time_and_signature(
    data: Path, signer: BundleSigner, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    render(data, first, signer, BUILT, version="0.1.0")
    render(data, second, BundleSigner(tmp_path / "other-keys"), datetime.now(UTC), version="0.1.0")
    one, two = _files(first), _files(second)
    assert one.keys() == two.keys()
    differing = {name for name in one if one[name] != two[name]}
    assert differing == {ENVELOPE_FILE, JWKS_FILE}  # the signature, and who signed
    statements = _statement(first), _statement(second)
    for statement in statements:
        del statement["predicate"]["built_at"]
    digests = [
        {
            s["name"]: s["digest"]["sha256"]
            for s in statement.pop("subject")
            if s["name"] != JWKS_FILE
        }
        for statement in statements
    ]
    assert statements[0] == statements[1]
    assert digests[0] == digests[1]


def test_a_bundle_holds_plots_an_offline_index_and_verifies(
    data: Path, signer: BundleSigner, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    render(data, out, signer, BUILT, version="0.1.0")
    for plot in ("analytics-latency", "analytics-burn-rate", "edge-coalescing", "billing-drift"):
        assert (out / "plots" / f"{plot}.png").read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in (out / "plots" / f"{plot}.svg").read_bytes()
    index = (out / "index.html").read_text()
    assert "All 2 checks passed." in index
    assert "&lt;script&gt;" in index  # details are escaped
    assert "<script" not in index
    assert "http://" not in index
    assert "https://" not in index  # nothing remote: it renders offline
    assert 'src="plots/analytics-latency.png"' in index
    assert 'href="acceptance/raw/analytics/latencies.json"' in index
    assert "replica SIGKILL" in index
    verified = verify_bundle(out, signer.jwks())
    assert verified.files == len(_files(out)) - 1
    assert verified.predicate["built_at"] == "2026-12-01T12:00:00.000000Z"
    assert verified.predicate["checks"] == {"passed": 2, "total": 2}
    assert not verified.self_signed_keys
    assert verify_bundle(out).self_signed_keys


def test_verification_fails_on_a_changed_missing_or_added_file(
    data: Path, signer: BundleSigner, tmp_path: Path
) -> None:
    pristine = tmp_path / "bundle"
    render(data, pristine, signer, BUILT, version="0.1.0")

    def tampered(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(pristine, copy)
        return copy

    flipped = tampered("flipped")
    target = flipped / "plots" / "edge-coalescing.png"
    content = bytearray(target.read_bytes())
    content[100] ^= 0x01
    target.write_bytes(bytes(content))
    missing = tampered("missing")
    (missing / "acceptance" / "raw" / "billing" / "reconciliation.json").unlink()
    added = tampered("added")
    (added / "screenshots" / "extra.png").write_bytes(b"new")
    for root, field, name in (
        (flipped, "changed", "plots/edge-coalescing.png"),
        (missing, "missing", "acceptance/raw/billing/reconciliation.json"),
        (added, "added", "screenshots/extra.png"),
    ):
        with pytest.raises(BundleInvalid) as refused:
            verify_bundle(root, signer.jwks())
        assert refused.value.check == "files"
        assert getattr(refused.value, field) == (name,)


def test_verification_fails_on_a_forged_manifest_or_the_wrong_keys(
    data: Path, signer: BundleSigner, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    render(data, out, signer, BUILT, version="0.1.0")
    other = BundleSigner(tmp_path / "stranger").jwks()
    with pytest.raises(BundleInvalid) as stranger:
        verify_bundle(out, other)
    assert stranger.value.check == "unknown_key"
    other["keys"][0]["kid"] = signer.jwks()["keys"][0]["kid"]  # same id, another key
    with pytest.raises(BundleInvalid) as impostor:
        verify_bundle(out, other)
    assert impostor.value.check == "signature"
    # A file changed and the manifest rewritten to match, but not re-signed by the key:
    envelope = json.loads((out / ENVELOPE_FILE).read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"] = statement["subject"][1:]
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (out / ENVELOPE_FILE).write_text(json.dumps(envelope))
    with pytest.raises(BundleInvalid) as forged:
        verify_bundle(out, signer.jwks())
    assert forged.value.check == "signature"
    (out / ENVELOPE_FILE).unlink()
    with pytest.raises(BundleInvalid) as unsigned:
        verify_bundle(out, signer.jwks())
    assert unsigned.value.check == "envelope"


def test_the_command_verifies_and_fails_after_one_flipped_byte(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir, first, out = tmp_path / "evidence-keys", tmp_path / "first", tmp_path / "bundle"
    render(data, first, BundleSigner(keys_dir), BUILT, version="0.1.0")  # as `build` would
    keys = ["--evidence-keys-dir", str(keys_dir)]
    built = ["evidence", "build", "--from", str(first), "--out", str(out), *keys]
    assert main(built) == 0
    assert "2 of 2 checks passed" in capsys.readouterr().out
    assert main(["evidence", "jwks", *keys]) == 0
    jwks = tmp_path / "jwks.json"
    jwks.write_text(capsys.readouterr().out)
    assert main(["evidence", "verify", str(out), "--jwks", str(jwks)]) == 0
    assert "verified" in capsys.readouterr().out
    index = out / "index.html"
    content = bytearray(index.read_bytes())
    content[0] ^= 0x20
    index.write_bytes(bytes(content))
    assert main(["evidence", "verify", str(out), "--jwks", str(jwks)]) == 1
    error = capsys.readouterr().err
    assert "changed: index.html" in error
    assert "does not verify (files)" in error
    assert main(built) == 2  # --out exists
    # A changed bundle is not signed again: --from takes only an unchanged one built here.
    again = ["evidence", "build", "--from", str(out), "--out", str(tmp_path / "laundered")]
    assert main([*again, *keys]) == 1
    assert "does not verify with this signer's keys" in capsys.readouterr().err
    assert not (tmp_path / "laundered").exists()
    stranger = ["--evidence-keys-dir", str(tmp_path / "stranger-keys")]
    assert (
        main(["evidence", "build", "--from", str(first), "--out", str(tmp_path / "o"), *stranger])
        == 1
    )
    assert main([*built[:4], "--out", str(tmp_path / "q"), "--quick", *keys]) == 2
    assert "--quick would change nothing" in capsys.readouterr().err


def test_the_burn_rate_is_the_share_over_the_slo_against_the_budget() -> None:
    assert burn_rates({"a": [10.0] * 20}) == [0.0]
    assert burn_rates({"a": [10.0] * 18 + [451.0, 900.0]}) == [2.0]
    assert burn_rates({"a": [500.0] * 40}) == [20.0, 20.0]
    assert burn_rates({"a": [1.0] * 19}) == []  # no whole window yet


def test_what_is_not_a_file_and_unusable_keys_are_refused_not_crashed(
    data: Path, signer: BundleSigner, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    render(data, out, signer, BUILT, version="0.1.0")
    (out / "empty").mkdir()
    os.mkfifo(out / "plots" / "pipe")
    (out / "screenshots" / "linked.png").symlink_to(out / "index.html")
    with pytest.raises(BundleInvalid) as strays:
        verify_bundle(out, signer.jwks())
    assert set(strays.value.added) == {"empty/", "plots/pipe", "screenshots/linked.png"}
    unusable_keys: list[dict[str, Any]] = [
        {"keys": 5},
        {"keys": []},
        {},
        {"keys": [{"kty": "OKP", "crv": "Ed25519"}]},
    ]
    for jwks in unusable_keys:
        with pytest.raises(BundleInvalid) as unusable:
            verify_bundle(out, jwks)
        assert unusable.value.check == "unknown_key"
    (out / JWKS_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleInvalid) as deep:
        verify_bundle(out)
    assert "nested too deeply" in deep.value.problem


def test_file_names_are_printed_safely(data: Path, signer: BundleSigner, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    render(data, out, signer, BUILT, version="0.1.0")
    (out / "a\nchanged: index.html").write_text("x")
    with pytest.raises(BundleInvalid) as added:
        verify_bundle(out, signer.jwks())
    assert "\n" not in added.value.problem
    assert "'a\\nchanged: index.html'" in added.value.problem


def test_data_of_another_shape_is_refused_and_leaves_nothing(
    data: Path, signer: BundleSigner, tmp_path: Path
) -> None:
    (data / "collection.json").write_text("{}")
    out = tmp_path / "bundle"
    with pytest.raises(RenderFailed):
        render(data, out, signer, BUILT, version="0.1.0")
    assert not out.exists()
    with pytest.raises(RenderFailed):
        render(tmp_path / "nothing-here", out, signer, BUILT, version="0.1.0")
    assert not out.exists()
