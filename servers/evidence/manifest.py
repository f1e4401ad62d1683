"""The bundle's signed manifest: every file with its sha256, as an in-toto statement in DSSE.

The statement (in-toto Statement v1) names each file of the bundle as a subject
with its sha256; its predicate says what the bundle is and when it was built.
It travels in a DSSE envelope (payload type `application/vnd.in-toto+json`)
signed with Ed25519, in `manifest.intoto.json` at the bundle's root; the public
keys are beside it as a JWKS (`keys.jwks.json`, itself a subject).

Verification needs no server: the bundle, and the signer's JWKS from a source
the verifier trusts (`--jwks`). The JWKS inside the bundle proves the files are
the ones signed, not who signed them. Any file changed, missing or added fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric import ed25519

from core import dsse
from core.times import rfc3339
from interceptors import keys

#: The envelope's file name, at the bundle's root (the one file not listed in it).
ENVELOPE_FILE = "manifest.intoto.json"
#: The signer's public keys, at the bundle's root.
JWKS_FILE = "keys.jwks.json"
#: DSSE payload type of an in-toto statement.
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: What the predicate is: this platform's evidence bundle, version 1.
PREDICATE_TYPE = "https://intelgraph.dev/evidence/bundle/v1"
_CHUNK = 1 << 20


class BundleInvalid(Exception):
    """The bundle does not verify.

    Attributes:
        check: Which check failed ("envelope", "signature", "unknown_key", "statement",
            "files").
        problem: What failed, for people.
        changed, missing, added: The files that differ (for "files").
    """

    def __init__(
        self,
        check: str,
        problem: str,
        *,
        changed: tuple[str, ...] = (),
        missing: tuple[str, ...] = (),
        added: tuple[str, ...] = (),
    ) -> None:
        super().__init__(problem)
        self.check = check
        self.problem = problem
        self.changed, self.missing, self.added = changed, missing, added


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(root: Path) -> dict[str, str]:
    """Every file under `root` but the envelope, by POSIX relative path, with its sha256.

    Raises:
        BundleInvalid: A symbolic link (a bundle holds files only).
    """
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise BundleInvalid("files", f"{relative} is a symbolic link", added=(relative,))
        if path.is_file() and relative != ENVELOPE_FILE:
            found[relative] = _sha256(path)
    return found


def statement(files: Mapping[str, str], predicate: Mapping[str, Any]) -> dict[str, Any]:
    """The in-toto statement naming `files` (path → sha256) with `predicate`."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": files[name]}} for name in sorted(files)],
        "predicateType": PREDICATE_TYPE,
        "predicate": dict(predicate),
    }


class BundleSigner:
    """Signs with the current key of an Ed25519 ring (made on first use)."""

    def __init__(self, directory: Path) -> None:
        if not (directory / keys.RING_FILE).exists():
            keys.rotate(directory, "EdDSA")
        self._directory = directory

    def current(self) -> tuple[ed25519.Ed25519PrivateKey, str]:
        """The signing key and its id."""
        key = keys.load(self._directory).current
        if not isinstance(key.private_key, ed25519.Ed25519PrivateKey):
            raise keys.KeyRingError("evidence bundles are signed with Ed25519 keys only")
        return key.private_key, key.kid

    def jwks(self) -> dict[str, Any]:
        """The ring's public keys as a JWKS document."""
        return {"keys": keys.load(self._directory).jwks()}


def seal(root: Path, signer: BundleSigner, built_at: datetime, about: Mapping[str, Any]) -> str:
    """Write the JWKS and the signed manifest of every file under `root`; the statement's digest.

    Args:
        root: The bundle's directory, complete but for its JWKS and envelope.
        signer: The signing key ring.
        built_at: When the bundle was built (the only time in the statement).
        about: The rest of the predicate (what was checked, against what).
    """
    (root / JWKS_FILE).write_text(json.dumps(signer.jwks(), indent=2, sort_keys=True) + "\n")
    predicate = {**about, "built_at": rfc3339(built_at)}
    body = rfc8785.dumps(statement(bundle_files(root), predicate))
    key, kid = signer.current()
    envelope = dsse.sign(body, PAYLOAD_TYPE, key, kid)
    (root / ENVELOPE_FILE).write_text(json.dumps(envelope, indent=2) + "\n")
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Verified:
    """A bundle whose signature and files checked out."""

    keyid: str
    files: int
    predicate: dict[str, Any] = field(default_factory=dict)
    #: The keys came from the bundle itself (integrity only, not who signed).
    self_signed_keys: bool = False


def _read_json(path: Path, check: str, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleInvalid(check, f"{what} is missing ({path.name})") from None
    except (OSError, ValueError) as error:
        raise BundleInvalid(check, f"{what} is not readable JSON: {error}") from None


def _statement_files(body: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    def malformed(problem: str) -> BundleInvalid:
        return BundleInvalid("statement", f"the signed statement is malformed: {problem}")

    try:
        parsed = json.loads(body)
        subjects, predicate = parsed["subject"], parsed["predicate"]
        listed = {item["name"]: item["digest"]["sha256"] for item in subjects}
        kinds = (parsed["_type"], parsed["predicateType"])
    except (ValueError, KeyError, TypeError) as error:
        raise malformed(str(error)) from None
    if kinds != (STATEMENT_TYPE, PREDICATE_TYPE):
        raise malformed("not an evidence bundle statement")
    if len(listed) != len(subjects) or not all(
        isinstance(name, str) and isinstance(digest, str) for name, digest in listed.items()
    ):
        raise malformed("subjects are not unique names with sha256 digests")
    if not isinstance(predicate, dict):
        raise malformed("the predicate is not an object")
    return listed, predicate


def verify_bundle(root: Path, jwks: Mapping[str, Any] | None = None) -> Verified:
    """Check the bundle at `root` against its signed manifest.

    Args:
        root: The bundle's directory.
        jwks: The signer's JWKS, from a source the caller trusts; None: the bundle's own
            (which proves integrity, not authorship).

    Raises:
        BundleInvalid: The first check that failed; for files, every file changed,
            missing or added.
    """
    own_keys = jwks is None
    keyset = _read_json(root / JWKS_FILE, "unknown_key", "the JWKS") if own_keys else jwks
    try:
        keys_by_id = keys.ed25519_public_keys(keyset.get("keys", []))  # type: ignore[union-attr]
    except (AttributeError, ValueError) as error:
        raise BundleInvalid("unknown_key", f"the JWKS is not usable: {error}") from None
    envelope = _read_json(root / ENVELOPE_FILE, "envelope", "the signed manifest")
    try:
        opened = dsse.open_envelope(envelope)
        keyid = dsse.verify(opened, PAYLOAD_TYPE, keys_by_id)
    except dsse.EnvelopeInvalid as error:
        raise BundleInvalid(error.check, error.problem) from None
    listed, predicate = _statement_files(opened.body)
    present = bundle_files(root)
    changed = tuple(sorted(n for n in listed.keys() & present.keys() if listed[n] != present[n]))
    missing = tuple(sorted(listed.keys() - present.keys()))
    added = tuple(sorted(present.keys() - listed.keys()))
    if changed or missing or added:
        parts = [
            f"{len(found)} {what} ({', '.join(found[:5])}{', …' if len(found) > 5 else ''})"
            for what, found in (("changed", changed), ("missing", missing), ("added", added))
            if found
        ]
        raise BundleInvalid(
            "files",
            "the files differ from the signed manifest: " + "; ".join(parts),
            changed=changed,
            missing=missing,
            added=added,
        )
    return Verified(keyid, len(listed), predicate, self_signed_keys=own_keys)
