"""Keys and tokens as units: files, rotation, verification, caching, revocation."""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from core.errors import ErrorReason, Unauthenticated
from interceptors import keys, tokens

TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")


def _verifier(directory: Path, revocations: tokens.InMemoryRevocations) -> tokens.TokenVerifier:
    return tokens.TokenVerifier(
        keys.KeyStore(directory),
        issuer="iss",
        audience="aud",
        leeway_s=5,
        revocations=revocations,
    )


def _mint(ring: keys.KeyRing, **changes: object) -> str:
    options: dict[str, object] = {
        "issuer": "iss",
        "audience": "aud",
        "subject": "alice",
        "tenant": TENANT,
        "scopes": ["catalog.read"],
        "ttl_s": 60,
    }
    options.update(changes)
    return tokens.mint(ring, **options)  # type: ignore[arg-type]


def test_keys_are_private_files_named_by_thumbprint(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ring = keys.rotate(directory, "EdDSA")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    pem = directory / f"{ring.current.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / keys.RING_FILE).stat().st_mode) == 0o600
    assert ring.current.kid == keys.thumbprint(ring.current.public_key)
    assert keys.load(directory).current.public_jwk() == ring.current.public_jwk()


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_both_algorithms_sign_and_verify(tmp_path: Path, algorithm: keys.Algorithm) -> None:
    ring = keys.rotate(tmp_path, algorithm)
    principal = _verifier(tmp_path, tokens.InMemoryRevocations()).verify(_mint(ring))
    assert principal.subject == "alice"
    assert principal.tenant == TENANT
    assert jwt.get_unverified_header(_mint(ring))["alg"] == algorithm
    jwk = ring.current.public_jwk()
    assert jwk["kty"] == ("OKP" if algorithm == "EdDSA" else "EC")


def test_rotation_keeps_one_previous_key_and_deletes_the_retired(tmp_path: Path) -> None:
    first = keys.rotate(tmp_path, "EdDSA")
    second = keys.rotate(tmp_path, "EdDSA")
    third = keys.rotate(tmp_path, "EdDSA")
    assert third.previous == second.current
    assert first.current.kid not in third.verification_keys
    assert not (tmp_path / f"{first.current.kid}.pem").exists()
    retired = keys.retire_previous(tmp_path)
    assert list(retired.verification_keys) == [third.current.kid]
    assert not (tmp_path / f"{second.current.kid}.pem").exists()


def test_a_tampered_key_file_is_refused(tmp_path: Path) -> None:
    ring = keys.rotate(tmp_path, "EdDSA")
    swapped = keys.generate_key("EdDSA").private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / f"{ring.current.kid}.pem").write_bytes(swapped)
    with pytest.raises(keys.KeyRingError, match="does not hold the key"):
        keys.load(tmp_path)


def test_a_missing_ring_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyRingError, match="conductor keys rotate"):
        keys.load(tmp_path)


def test_a_store_sees_rotations_made_elsewhere(tmp_path: Path) -> None:
    keys.rotate(tmp_path, "EdDSA")
    store = keys.KeyStore(tmp_path)
    assert not store.refresh()
    ring = keys.rotate(tmp_path, "ES256")
    assert store.refresh()
    assert store.ring().current.kid == ring.current.kid
    assert store.generation == 1


def test_revocation_applies_even_to_cached_verifications(tmp_path: Path) -> None:
    ring = keys.rotate(tmp_path, "EdDSA")
    revocations = tokens.InMemoryRevocations()
    verifier = _verifier(tmp_path, revocations)
    token = _mint(ring)
    principal = verifier.verify(token)
    assert verifier.verify(token) is principal  # served from the cache
    revocations.revoke(principal.token_id, principal.expires_at)
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert refused.value.reason == ErrorReason.ERROR_REASON_TOKEN_REVOKED


def test_revocations_last_only_as_long_as_their_tokens() -> None:
    revocations = tokens.InMemoryRevocations()
    now = time.time()
    revocations.revoke("short-lived", now + 0.3)
    revocations.revoke("long-lived", now + 60)
    revocations.revoke("already-expired", now - 1)
    assert revocations.is_revoked("short-lived")
    assert not revocations.is_revoked("already-expired")
    assert len(revocations) == 2
    time.sleep(0.4)
    assert not revocations.is_revoked("short-lived")
    assert len(revocations) == 1


def test_a_cached_token_still_expires(tmp_path: Path) -> None:
    ring = keys.rotate(tmp_path, "EdDSA")
    verifier = tokens.TokenVerifier(
        keys.KeyStore(tmp_path),
        issuer="iss",
        audience="aud",
        leeway_s=0,
        revocations=tokens.InMemoryRevocations(),
    )
    token = _mint(ring, ttl_s=2)  # exp is whole seconds: at least 1 s from now
    verifier.verify(token)
    time.sleep(2.1)
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert refused.value.reason == ErrorReason.ERROR_REASON_TOKEN_EXPIRED


def test_leeway_tolerates_small_clock_skew(tmp_path: Path) -> None:
    ring = keys.rotate(tmp_path, "EdDSA")
    verifier = _verifier(tmp_path, tokens.InMemoryRevocations())
    verifier.verify(_mint(ring, now=time.time() + 3))  # iat/nbf 3 s ahead, leeway 5 s
    with pytest.raises(Unauthenticated):
        verifier.verify(_mint(ring, now=time.time() + 30))


def test_a_just_in_time_token_ends_with_its_grant_leeway_or_not(tmp_path: Path) -> None:
    ring = keys.rotate(tmp_path, "EdDSA")
    verifier = _verifier(tmp_path, tokens.InMemoryRevocations())  # leeway 5 s
    ended = time.time() - 62  # exp 2 s ago
    verifier.verify(_mint(ring, now=ended))  # an ordinary token: within the leeway
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(_mint(ring, now=ended, jit=True))
    assert refused.value.reason == ErrorReason.ERROR_REASON_TOKEN_EXPIRED
    cached = _mint(ring, ttl_s=2, jit=True)
    verifier.verify(cached)
    time.sleep(2.1)
    with pytest.raises(Unauthenticated):  # verified once and cached: still refused at its end
        verifier.verify(cached)


def test_retirement_drops_cached_verifications(tmp_path: Path) -> None:
    old = keys.rotate(tmp_path, "EdDSA")
    store = keys.KeyStore(tmp_path)
    verifier = tokens.TokenVerifier(
        store, issuer="iss", audience="aud", leeway_s=5, revocations=tokens.InMemoryRevocations()
    )
    token = _mint(old)
    verifier.verify(token)
    keys.rotate(tmp_path, "EdDSA")
    keys.retire_previous(tmp_path)
    store.refresh()
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert refused.value.reason == ErrorReason.ERROR_REASON_TOKEN_KEY_UNKNOWN


def test_tokens_over_the_size_bound_are_refused_unread(tmp_path: Path) -> None:
    keys.rotate(tmp_path, "EdDSA")
    verifier = _verifier(tmp_path, tokens.InMemoryRevocations())
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify("a" * (tokens.MAX_TOKEN_CHARS + 1))
    assert refused.value.reason == ErrorReason.ERROR_REASON_TOKEN_MALFORMED


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", 10**20),
        ("exp", 1e300),
        ("sub", "x" * (tokens.MAX_SUBJECT_CHARS + 1)),
        ("sub", "nul\x00byte"),
        ("jti", "j" * (tokens.MAX_TOKEN_ID_CHARS + 1)),
        ("scopes", ["s"] * (tokens.MAX_SCOPES + 1)),
        ("scopes", ["s" * (tokens.MAX_SCOPE_CHARS + 1)]),
    ],
)
def test_signed_claims_out_of_bounds_are_refused(tmp_path: Path, claim: str, value: object) -> None:
    ring = keys.rotate(tmp_path, "EdDSA")
    now = int(time.time())
    claims = {
        "iss": "iss",
        "aud": "aud",
        "sub": "alice",
        "tenant": str(TENANT),
        "scopes": ["catalog.read"],
        "jti": "j1",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        claim: value,
    }
    key = ring.current
    token = jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
    with pytest.raises(Unauthenticated) as refused:
        _verifier(tmp_path, tokens.InMemoryRevocations()).verify(token)
    assert refused.value.reason == ErrorReason.ERROR_REASON_TOKEN_CLAIMS_INVALID


def test_an_unreadable_new_ring_leaves_the_previous_one_in_use(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    keys.rotate(directory, "EdDSA")
    store = keys.KeyStore(directory)
    kid = store.ring().current.kid
    ring_file = directory / keys.RING_FILE
    good = ring_file.read_text()
    document = json.loads(good)
    document["current"]["kid"] = "missing-kid"
    ring_file.write_text(json.dumps(document))
    os.utime(ring_file, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert not store.refresh()
    assert store.ring().current.kid == kid  # tokens keep verifying
    assert "missing-kid" in store.problem
    ring_file.write_text(good)
    os.utime(ring_file, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    assert store.refresh()
    assert store.problem == ""
