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


def _walk(root: Path) -> tuple[dict[str, str], list[str]]:
    """The regular files under `root` (but the envelope) with their sha256, and the rest.

    The rest: symbolic links, pipes, devices and empty directories (`name/`).
    """
    found = {}
    strays = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            strays.append(relative)
        elif path.is_dir():
            if not any(path.iterdir()):
                strays.append(relative + "/")
        elif relative != ENVELOPE_FILE:
            found[relative] = _sha256(path)
    return found, strays


def bundle_files(root: Path) -> dict[str, str]:
    """Every file under `root` but the envelope, by POSIX relative path, with its sha256.

    Raises:
        BundleInvalid: Anything but regular files and the directories holding them: a
            symbolic link, a pipe or device, or an empty directory (a bundle holds files
            only, and a verifier must see everything that is there).
    """
    found, strays = _walk(root)
    if strays:
        raise BundleInvalid(
            "files",
            "the bundle holds what is not a file: " + ", ".join(map(shown, strays[:5])),
            added=tuple(strays),
        )
    return found


def shown(name: str) -> str:
    """A file name as it is safe to print: control characters escaped, quoted if any were.

    (A name holding a newline must not print as a line of its own, an escape sequence
    must not reach the terminal.)
    """
    if name.isprintable():
        return name
    return "'" + name.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"


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


#: The largest envelope or JWKS read (a bundle's manifest of thousands of files is far less).
MAX_JSON_BYTES = 16 * 1024 * 1024


def _read_json(path: Path, check: str, what: str) -> Any:
    try:
        if path.is_symlink() or path.stat().st_size > MAX_JSON_BYTES:
            raise BundleInvalid(check, f"{what} is a link or larger than {MAX_JSON_BYTES} bytes")
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleInvalid(check, f"{what} is missing ({path.name})") from None
    except (OSError, ValueError, RecursionError) as error:
        problem = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise BundleInvalid(check, f"{what} is not readable JSON: {problem}") from None


def public_keys(jwks: Any) -> dict[str, ed25519.Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document, by kid.

    Raises:
        BundleInvalid: ("unknown_key") It is not a JWKS with at least one Ed25519 key.
    """
    listed = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(listed, list) or not all(isinstance(jwk, Mapping) for jwk in listed):
        raise BundleInvalid("unknown_key", 'the JWKS is not {"keys": [JWK, ...]}')
    try:
        found = keys.ed25519_public_keys(listed)
    except (AttributeError, TypeError, ValueError) as error:
        raise BundleInvalid("unknown_key", f"the JWKS has a malformed key: {error}") from None
    if not found:
        raise BundleInvalid("unknown_key", "the JWKS holds no Ed25519 key")
    return found


def _statement_files(body: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    def malformed(problem: str) -> BundleInvalid:
        return BundleInvalid("statement", f"the signed statement is malformed: {problem}")

    try:
        parsed = json.loads(body)
        subjects, predicate = parsed["subject"], parsed["predicate"]
        listed = {item["name"]: item["digest"]["sha256"] for item in subjects}
        kinds = (parsed["_type"], parsed["predicateType"])
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise malformed(type(error).__name__) from None
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
    keys_by_id = public_keys(
        _read_json(root / JWKS_FILE, "unknown_key", "the JWKS") if own_keys else jwks
    )
    envelope = _read_json(root / ENVELOPE_FILE, "envelope", "the signed manifest")
    try:
        opened = dsse.open_envelope(envelope)
        keyid = dsse.verify(opened, PAYLOAD_TYPE, keys_by_id)
    except dsse.EnvelopeInvalid as error:
        raise BundleInvalid(error.check, error.problem) from None
    listed, predicate = _statement_files(opened.body)
    present, strays = _walk(root)
    # A directory emptied by a deletion is that deletion, said once (as a missing file).
    holders = {name.rsplit("/", 1)[0] + "/" for name in listed if "/" in name}
    changed = tuple(sorted(n for n in listed.keys() & present.keys() if listed[n] != present[n]))
    missing = tuple(sorted(listed.keys() - present.keys()))
    added = tuple(sorted((present.keys() - listed.keys()) | (set(strays) - holders)))
    if changed or missing or added:
        parts = [
            f"{len(found)} {what} ({', '.join(map(shown, found[:5]))}"
            f"{', …' if len(found) > 5 else ''})"
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
