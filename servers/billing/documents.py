"""Signed billing documents: canonical serialisation, Ed25519 signatures, offline verification.

A finalized invoice or an issued credit note is serialised once, canonically
(JSON, keys sorted, no whitespace, amounts as integers of minor units, times
in RFC 3339 UTC), and the exact bytes are signed with the billing key ring
(`billing_keys_dir`, Ed25519) and stored beside the signature and the key id.
Anyone holding the public key verifies a document offline: `conductor billing
verify FILE --jwks KEYS` (`conductor billing jwks` prints every key that ever
signed one; keys outlive rotation in `billing_signing_keys`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from interceptors import keys
from servers.billing import store
from servers.db import Database


def canonical(document: Mapping[str, Any]) -> str:
    """The canonical JSON text of `document` (what is signed).

    >>> canonical({"b": 1, "a": [2, "é"]})
    '{"a":[2,"é"],"b":1}'
    """
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Signed:
    """A signed payload."""

    payload: str
    signature: str
    key_id: str


class DocumentSigner:
    """Signs with the current key of a billing key directory (created on first use).

    Args:
        directory: The key directory (`keys rotate` layout, Ed25519).
    """

    def __init__(self, directory: Path) -> None:
        if not (directory / keys.RING_FILE).exists():
            keys.rotate(directory, "EdDSA")
        self._store = keys.KeyStore(directory)
        self._recorded: set[str] = set()

    async def sign(self, session: AsyncSession, document: Mapping[str, Any]) -> Signed:
        """Sign `document`'s canonical form; remember the key's public half in the store."""
        key = self._store.ring().current
        private = key.private_key
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise keys.KeyRingError("billing documents are signed with Ed25519 keys only")
        payload = canonical(document)
        signature = base64.b64encode(private.sign(payload.encode())).decode("ascii")
        if key.kid not in self._recorded:  # once per key and process is enough
            await store.record_signing_key(session, key.kid, key.public_jwk(), datetime.now(UTC))
            kid = key.kid
            event.listen(
                session.sync_session, "after_commit", lambda _: self._recorded.add(kid), once=True
            )
        return Signed(payload, signature, key.kid)

    def jwks(self) -> list[dict[str, str]]:
        """The ring's public keys (current first)."""
        return self._store.ring().jwks()


async def published_keys(database: Database, directory: Path) -> list[dict[str, str]]:
    """Every key that ever signed a document: this ring's, then those only the store recalls."""
    found = {jwk["kid"]: jwk for jwk in DocumentSigner(directory).jwks()}
    async with database.platform_session(readonly=True) as session:
        for row in await store.signing_keys(session):
            found.setdefault(row.kid, row.public_jwk)
    return list(found.values())


class VerificationError(Exception):
    """The document's signature does not verify (or its key is unknown)."""


#: Ed25519 public keys of a JWKS, by kid.
public_keys = keys.ed25519_public_keys


def verify(
    payload: str, signature: str, key_id: str, keys_by_id: Mapping[str, ed25519.Ed25519PublicKey]
) -> dict[str, Any]:
    """The signed document, once its signature checks out.

    Raises:
        VerificationError: Unknown key, or the signature does not match the payload.
    """
    key = keys_by_id.get(key_id)
    if key is None:
        raise VerificationError(f"no public key {key_id!r}: pass the JWKS that holds it")
    try:
        key.verify(base64.b64decode(signature), payload.encode())
    except (InvalidSignature, ValueError):
        raise VerificationError("the signature does not match the document") from None
    document: dict[str, Any] = json.loads(payload)
    return document


def signed_parts(exported: Mapping[str, Any]) -> tuple[str, str, str]:
    """(payload, signature, key id) of an exported Invoice or CreditNote.

    As JSON, snake_case or the camelCase grpcurl prints, bare or inside a
    response message.

    Raises:
        VerificationError: No signed document in it.
    """
    for nested in ("invoice", "creditNote", "credit_note"):
        if isinstance(exported.get(nested), Mapping):
            return signed_parts(exported[nested])
    payload = exported.get("signed_payload", exported.get("signedPayload"))
    signature = exported.get("signature")
    key_id = exported.get("signing_key_id", exported.get("signingKeyId"))
    if not (payload and signature and key_id):
        raise VerificationError("no signed document (signed_payload, signature, signing_key_id)")
    return str(payload), str(signature), str(key_id)
