"""Token signing keys: a current and a previous key, on disk, rotated without downtime.

A key directory holds one PEM file per key (PKCS#8, mode 0600) and
`keyring.json`, which names the current key (it signs) and the previous one
(it still verifies, so tokens minted before a rotation keep working until
their key is retired). Each key's id (`kid`) is its RFC 7638 JWK thumbprint.

Rotation writes the new key file first and then replaces `keyring.json`
atomically, so a server reading the directory sees the old ring or the new
one, never half of either. Servers notice changes through `KeyStore`, which
re-reads the ring when `keyring.json` changes (checked at most once a second).

>>> import tempfile
>>> ring = rotate(Path(tempfile.mkdtemp()) / "keys", "EdDSA")
>>> ring.current.algorithm, ring.previous is None
('EdDSA', True)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

Algorithm: TypeAlias = Literal["EdDSA", "ES256"]
PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

RING_FILE = "keyring.json"
logger = logging.getLogger(__name__)
#: Seconds between checks of `keyring.json` for a rotation.
RELOAD_INTERVAL_S = 1.0


class KeyRingError(RuntimeError):
    """The key directory is missing, incomplete or unreadable."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """One key pair and the algorithm it is used with.

    Keys compare by kid (the public key's thumbprint); the private key is
    kept out of comparisons and out of `repr`, hence out of logs.
    """

    kid: str
    algorithm: Algorithm
    private_key: PrivateKey = field(compare=False, repr=False)

    @property
    def public_key(self) -> PublicKey:
        """The public half, which verifies."""
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK with `kid`, `alg` and `use`."""
        return {
            **_public_members(self.public_key),
            "kid": self.kid,
            "alg": self.algorithm,
            "use": "sig",
        }


def _public_members(public_key: PublicKey) -> dict[str, str]:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return {k: str(v) for k, v in OKPAlgorithm.to_jwk(public_key, as_dict=True).items()}
    return {k: str(v) for k, v in ECAlgorithm.to_jwk(public_key, as_dict=True).items()}


def thumbprint(public_key: PublicKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public key, base64url: its `kid`."""
    members = _public_members(public_key)
    required = ("crv", "kty", "x") if members["kty"] == "OKP" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: members[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def generate_key(algorithm: Algorithm) -> SigningKey:
    """A new key pair for `algorithm` (Ed25519 for EdDSA, P-256 for ES256)."""
    private_key: PrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return SigningKey(thumbprint(private_key.public_key()), algorithm, private_key)


@dataclass(frozen=True)
class KeyRing:
    """The keys tokens are signed and verified with."""

    current: SigningKey
    previous: SigningKey | None = None

    @property
    def verification_keys(self) -> Mapping[str, SigningKey]:
        """Every key that verifies, by kid: the current and the previous one."""
        keys = {self.current.kid: self.current}
        if self.previous is not None:
            keys[self.previous.kid] = self.previous
        return keys

    def jwks(self) -> list[dict[str, str]]:
        """The public keys as JWKs, current first."""
        return [key.public_jwk() for key in self.verification_keys.values()]


def _write_private(path: Path, key: SigningKey) -> None:
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)


def _read_private(directory: Path, kid: str, algorithm: Algorithm) -> SigningKey:
    path = directory / f"{kid}.pem"
    try:
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise KeyRingError(f"cannot read key {path}: {error}") from None
    if not isinstance(private_key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyRingError(f"{path} is not an Ed25519 or EC key")
    key = SigningKey(kid, algorithm, private_key)
    if thumbprint(key.public_key) != kid:
        raise KeyRingError(f"{path} does not hold the key {kid}")
    return key


def _write_ring(directory: Path, ring: KeyRing) -> None:
    document = {
        "current": {"kid": ring.current.kid, "alg": ring.current.algorithm},
        "previous": (
            {"kid": ring.previous.kid, "alg": ring.previous.algorithm} if ring.previous else None
        ),
    }
    staging = directory / f".{RING_FILE}.{os.getpid()}"
    staging.write_text(json.dumps(document, indent=2) + "\n")
    staging.chmod(0o600)
    staging.replace(directory / RING_FILE)


def load(directory: Path) -> KeyRing:
    """Read the ring in `directory`.

    Raises:
        KeyRingError: The directory holds no ring, or a key is missing or altered.
    """
    try:
        document = json.loads((directory / RING_FILE).read_text())
    except FileNotFoundError:
        raise KeyRingError(f"no signing keys in {directory}: run `conductor keys rotate`") from None
    except (OSError, ValueError) as error:
        raise KeyRingError(f"cannot read {directory / RING_FILE}: {error}") from None
    current = _read_private(directory, document["current"]["kid"], document["current"]["alg"])
    previous_entry = document.get("previous")
    previous = (
        _read_private(directory, previous_entry["kid"], previous_entry["alg"])
        if previous_entry
        else None
    )
    return KeyRing(current, previous)


def rotate(directory: Path, algorithm: Algorithm) -> KeyRing:
    """Make a new current key; the old current becomes previous; the old previous is retired.

    Creates the directory (mode 0700) and the first key when there is none.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        old = load(directory)
    except KeyRingError:
        if (directory / RING_FILE).exists():
            raise
        old = None
    new_key = generate_key(algorithm)
    _write_private(directory / f"{new_key.kid}.pem", new_key)
    ring = KeyRing(new_key, old.current if old else None)
    _write_ring(directory, ring)
    if old and old.previous:
        (directory / f"{old.previous.kid}.pem").unlink(missing_ok=True)
    return ring


def retire_previous(directory: Path) -> KeyRing:
    """Stop accepting tokens signed with the previous key; its file is deleted."""
    old = load(directory)
    ring = KeyRing(old.current)
    _write_ring(directory, ring)
    if old.previous:
        (directory / f"{old.previous.kid}.pem").unlink(missing_ok=True)
    return ring


class KeyStore:
    """The ring of a key directory, kept current as operators rotate it.

    A changed ring that cannot be read (a secret manager that wrote `keyring.json`
    before the key it names) leaves the previous ring in use — tokens keep verifying —
    and is said once, in the log and in `problem`, until a readable ring replaces it.

    Attributes:
        generation: Bumped on every reload, so caches of verified tokens know to drop.
        problem: Why the current ring on disk is not in use ("" when it is).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp = self._ring_stamp()
        self._ring = load(directory)
        self._checked_at = time.monotonic()
        self.generation = 0
        self.problem = ""

    def _ring_stamp(self) -> tuple[int, int]:
        try:
            stat = (self.directory / RING_FILE).stat()
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_ino)

    def ring(self) -> KeyRing:
        """The current ring, re-read if `keyring.json` changed since the last check."""
        now = time.monotonic()
        if now - self._checked_at >= RELOAD_INTERVAL_S:
            self.refresh(now)
        return self._ring

    def refresh(self, now: float | None = None) -> bool:
        """Re-read the ring if it changed; returns True when it did."""
        with self._lock:
            self._checked_at = time.monotonic() if now is None else now
            stamp = self._ring_stamp()
            if stamp == self._stamp:
                return False
            try:
                ring = load(self.directory)
            except KeyRingError as error:
                if not self.problem:
                    logger.warning("signing key ring unreadable, the previous one stays: %s", error)
                self.problem = str(error)
                return False  # looked at again at the next check
            self._ring, self._stamp, self.problem = ring, stamp, ""
            self.generation += 1
            return True


def ed25519_public_keys(jwks: Iterable[Mapping[str, str]]) -> dict[str, ed25519.Ed25519PublicKey]:
    """The Ed25519 public keys of a JWKS's `keys`, by kid; keys of other types are skipped.

    Only the public members are read, so a JWK that also carries its private
    part (`d`) still yields just a public key. `x` may be base64url (as JWKs
    write it) or standard base64, padded or not.

    Raises:
        ValueError: An Ed25519 JWK without a kid or with a malformed `x`.
    """
    found = {}
    for jwk in jwks:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if not jwk.get("kid"):
            raise ValueError("an Ed25519 JWK has no kid")
        try:
            encoded = jwk["x"].replace("-", "+").replace("_", "/")
            raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            found[jwk["kid"]] = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except (KeyError, binascii.Error, ValueError):
            raise ValueError(f"JWK {jwk['kid']!r} has no valid Ed25519 public key (x)") from None
    return found
