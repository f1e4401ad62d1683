"""DSSE envelopes (Dead Simple Signing Envelope, v1.0) signed with Ed25519.

One implementation for everything the platform signs as an envelope: the RAG
proof manifests and the evidence bundle's in-toto statement. A signature covers
DSSE's pre-authentication encoding of the payload type and the payload, so a
signature over one kind of document can never be replayed as another.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> envelope = sign(b'{"a":1}', "application/vnd.example+json", key, "k1")
>>> opened = open_envelope(envelope)
>>> verify(opened, "application/vnd.example+json", {"k1": key.public_key()})
'k1'
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: Which check an envelope failed, for machines.
Check: TypeAlias = Literal["envelope", "payload_type", "unknown_key", "signature"]


class EnvelopeInvalid(Exception):
    """An envelope is malformed or its signature does not verify.

    Attributes:
        check: Which check failed.
        problem: What failed, as a sentence for people.
    """

    def __init__(self, check: Check, problem: str) -> None:
        super().__init__(problem)
        self.check: Check = check
        self.problem = problem


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the bytes actually signed.

    >>> pae("http://example.com/HelloWorld", b"hello world")
    b'DSSEv1 29 http://example.com/HelloWorld 11 hello world'
    """
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(body), body)


def sign(body: bytes, payload_type: str, key: Ed25519PrivateKey, keyid: str) -> dict[str, Any]:
    """An envelope of `body`, signed with `key` (`keyid` is a hint for verifiers)."""
    signature = key.sign(pae(payload_type, body))
    return {
        "payload": base64.b64encode(body).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode("ascii")}],
    }


@dataclass(frozen=True)
class Opened:
    """An envelope's parts, decoded (not yet verified)."""

    body: bytes
    payload_type: str
    signatures: tuple[tuple[str, bytes], ...]


def _decode_base64(value: str) -> bytes:
    # DSSE verifiers must accept standard and URL-safe alphabets, padded or not.
    standard = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)


def open_envelope(envelope: Any) -> Opened:
    """The parts of a parsed JSON envelope.

    Raises:
        EnvelopeInvalid: (check "envelope") it is not a DSSE envelope.
    """
    if not isinstance(envelope, Mapping):
        raise EnvelopeInvalid("envelope", "the envelope is not a JSON object")
    payload, payload_type, signatures = (
        envelope.get("payload"),
        envelope.get("payloadType"),
        envelope.get("signatures"),
    )
    if not isinstance(payload, str) or not isinstance(payload_type, str):
        raise EnvelopeInvalid("envelope", "the envelope lacks a string payload or payloadType")
    if not isinstance(signatures, list) or not signatures:
        raise EnvelopeInvalid("envelope", "the envelope has no signatures")
    decoded = []
    for position, entry in enumerate(signatures):
        if not isinstance(entry, Mapping):
            raise EnvelopeInvalid("envelope", f"signature {position} is not a JSON object")
        # DSSE: an unset keyid is the same as an empty one.
        sig, keyid = entry.get("sig"), entry.get("keyid") or ""
        if not isinstance(sig, str) or not isinstance(keyid, str):
            raise EnvelopeInvalid("envelope", f"signature {position} lacks a string sig or keyid")
        try:
            decoded.append((keyid, _decode_base64(sig)))
        except (binascii.Error, ValueError):
            raise EnvelopeInvalid("envelope", f"signature {position} is not base64") from None
    try:
        body = _decode_base64(payload)
    except (binascii.Error, ValueError):
        raise EnvelopeInvalid("envelope", "the payload is not base64") from None
    return Opened(body, payload_type, tuple(decoded))


def verify(opened: Opened, payload_type: str, keys_by_id: Mapping[str, Ed25519PublicKey]) -> str:
    """The id of a key whose signature verifies over the envelope.

    Raises:
        EnvelopeInvalid: Another payload type ("payload_type"), none of the signers'
            keys given ("unknown_key"), or no signature verifies ("signature").
    """
    if opened.payload_type != payload_type:
        raise EnvelopeInvalid(
            "payload_type", f"the payload type is {opened.payload_type!r}, not {payload_type!r}"
        )
    message = pae(payload_type, opened.body)
    tried = False
    for keyid, signature in opened.signatures:
        # The keyid only narrows which keys to try (DSSE); an absent one means all of them.
        candidates = ([keyid] if keyid in keys_by_id else []) if keyid else list(keys_by_id)
        for candidate in candidates:
            tried = True
            try:
                keys_by_id[candidate].verify(signature, message)
            except InvalidSignature:
                continue
            return candidate
    if not tried:
        named = sorted({keyid for keyid, _ in opened.signatures if keyid})
        raise EnvelopeInvalid(
            "unknown_key",
            f"signed by keys {named}, none of them given: pass the JWKS that holds them"
            if named
            else "no public keys were given: pass the JWKS of the signer",
        )
    raise EnvelopeInvalid("signature", "no signature verifies over the payload")
