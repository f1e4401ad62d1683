"""Proof manifests as units: the Merkle tree against RFC 9162, signing, verification."""

from __future__ import annotations

import base64
import copy
import doctest
import functools
import hashlib
import json
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from interceptors import keys
from servers.rag import proofs
from servers.rag.proofs import (
    ManifestChunk,
    ManifestDocument,
    ManifestInvalid,
    VerifiedManifest,
    build_manifest,
    chunk_inclusion_proof,
    ed25519_keys,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    pae,
    sign_envelope,
    verify_chunk_inclusion,
    verify_envelope,
    verify_inclusion,
)

pytestmark = pytest.mark.unit

# Properties run at a fixed, small budget: the file stays well under five seconds.
PROPERTIES = settings(max_examples=40, deadline=None, database=None)
# A changed byte costs one verification (~1 ms): many positions are cheap.
FLIPS = settings(max_examples=150, deadline=None, database=None)


# -- The Merkle tree, against RFC 9162 §2.1's recursive definitions -------------------------


class ReferenceTree:
    """MTH and PATH exactly as RFC 9162 §2.1 writes them, over leaf data d[0:n].

    Subtree hashes are memoised on their bounds so every index's path is cheap
    to compute; the recursion itself is the RFC's, unchanged.
    """

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries
        self.mth = functools.cache(self._mth)

    @staticmethod
    def split(n: int) -> int:
        """k, the largest power of two smaller than n (n > 1)."""
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return hashlib.sha256(b"\x00" + self.entries[lo]).digest()
        k = self.split(n)
        return hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = self.split(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]


def _entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def test_the_empty_tree_hashes_nothing() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").digest() == ReferenceTree([]).mth(0, 0)


@PROPERTIES
@given(st.integers(min_value=1, max_value=300))
@example(1)
@example(2)
@example(255)
@example(256)
@example(257)
@example(300)
def test_root_and_every_audit_path_match_the_rfc_definitions(n: int) -> None:
    entries = _entries(n)
    reference = ReferenceTree(entries)
    leaves = [leaf_hash(entry) for entry in entries]
    root = merkle_root(leaves)
    assert root == reference.mth(0, n)
    longest = math.ceil(math.log2(n))
    for index in range(n):
        proof = inclusion_proof(leaves, index)
        assert proof == reference.path(index, 0, n)
        assert len(proof) <= longest
        assert verify_inclusion(leaves[index], index, n, proof, root)


@PROPERTIES
@given(st.integers(min_value=2, max_value=300), st.data())
def test_a_proof_holds_for_its_own_leaf_and_place_only(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(entry) for entry in _entries(n)]
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index), label="other")
    proof = inclusion_proof(leaves, index)
    assert not verify_inclusion(leaves[index], other, n, proof, root)
    assert not verify_inclusion(leaves[other], index, n, proof, root)
    assert not verify_inclusion(leaf_hash(b"not an entry"), index, n, proof, root)
    assert not verify_inclusion(leaves[index], index, n, [*proof, root], root)
    if proof:
        assert not verify_inclusion(leaves[index], index, n, proof[:-1], root)
        flipped = bytes([proof[0][0] ^ 1]) + proof[0][1:]
        assert not verify_inclusion(leaves[index], index, n, [flipped, *proof[1:]], root)


def test_a_proof_outside_the_tree_fails() -> None:
    leaves = [leaf_hash(entry) for entry in _entries(5)]
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, 4)
    assert not verify_inclusion(leaves[4], 5, 5, proof, root)
    assert not verify_inclusion(leaves[4], -1, 5, proof, root)
    assert not verify_inclusion(leaves[4], 4, 6, proof, root)
    with pytest.raises(IndexError):
        inclusion_proof(leaves, 5)
    with pytest.raises(ValueError, match="has 5 bytes, not 32"):
        merkle_root([b"short"])


def test_the_docstring_examples_hold() -> None:
    result = doctest.testmod(proofs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_pae_matches_the_dsse_test_vector() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    # Lengths count bytes, not characters.
    assert pae("é", b"\xff") == b"DSSEv1 2 \xc3\xa9 1 \xff"


# -- A signed manifest -----------------------------------------------------------------------

# Markdown with multi-byte characters; chunks leave gaps (a heading, blank lines) uncovered.
TEXT = (
    "# Résumé des faits\n\n"
    + "".join(
        f"Paragraph {i}: Alice 🧾 met Bob on day {i} and wrote to alice{i}@example.org.\n\n"
        for i in range(8)
    )
).encode()
HEADING = len("# Résumé des faits\n\n".encode())


def _chunks(text: bytes) -> list[ManifestChunk]:
    found, start, index = [], HEADING, 0
    while start < len(text):
        end = text.index(b"\n\n", start) + 1  # each paragraph, its blank line left out
        found.append(ManifestChunk(uuid.UUID(int=100 + index), index, start, end))
        start, index = end + 1, index + 1
    return found


def _manifest(*, document: bytes = TEXT, media_type: str = "text/markdown") -> dict[str, Any]:
    return build_manifest(
        document=ManifestDocument(
            id=uuid.UUID(int=1),
            sha256=hashlib.sha256(document).hexdigest(),
            media_type=media_type,
            size_bytes=len(document),
        ),
        chunks=_chunks(TEXT),
        text=TEXT,
        purpose_id="legal-review",
        purpose_version=1,
        redactions={"email": 8},
        output_kind="summary",
        output_media_type="text/markdown",
        output=b"Alice met Bob eight times.",
        issued_at=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
    )


KEY = Ed25519PrivateKey.generate()
KEYS = {"k1": KEY.public_key()}
MANIFEST = _manifest()
ENVELOPE = sign_envelope(MANIFEST, KEY, "k1")
PAYLOAD = base64.b64decode(ENVELOPE["payload"])


def _signed(payload: bytes) -> dict[str, Any]:
    """An envelope of any payload bytes with a valid signature (to reach the later checks)."""
    signature = KEY.sign(pae(proofs.PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": proofs.PAYLOAD_TYPE,
        "signatures": [{"keyid": "k1", "sig": base64.b64encode(signature).decode()}],
    }


def _canonical(manifest: dict[str, Any]) -> bytes:
    return proofs.canonical_payload(manifest)


def _flip(data: bytes, position: int, mask: int) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


def _fails(check: str, envelope: Any, **given: bytes) -> ManifestInvalid:
    with pytest.raises(ManifestInvalid) as caught:
        verify_envelope(envelope, KEYS, **given)
    assert caught.value.check == check, caught.value.problem
    assert caught.value.problem
    return caught.value


def test_the_manifest_has_the_documented_shape() -> None:
    assert MANIFEST["_type"] == "https://intelgraph.dev/rag/manifest/v1"
    assert MANIFEST["document"] == {
        "id": str(uuid.UUID(int=1)),
        "sha256": hashlib.sha256(TEXT).hexdigest(),
        "text_sha256": hashlib.sha256(TEXT).hexdigest(),
        "media_type": "text/markdown",
        "size_bytes": len(TEXT),
        "text_bytes": len(TEXT),
    }
    first = MANIFEST["chunks"][0]
    piece = TEXT[first["byte_start"] : first["byte_end"]]
    assert piece.decode().startswith("Paragraph 0")
    assert first["sha256"] == hashlib.sha256(piece).hexdigest()
    assert first["leaf"] == hashlib.sha256(b"\x00" + piece).hexdigest()
    assert MANIFEST["merkle"]["size"] == len(MANIFEST["chunks"]) == 8
    assert MANIFEST["output"]["sha256"] == hashlib.sha256(b"Alice met Bob eight times.").hexdigest()
    assert MANIFEST["issued_at"].endswith("Z")
    assert ENVELOPE["payloadType"] == "application/vnd.intelgraph.rag-manifest+json"
    assert _canonical(MANIFEST) == PAYLOAD
    assert json.loads(PAYLOAD) == MANIFEST


def test_a_signed_manifest_verifies_offline() -> None:
    verified = verify_envelope(ENVELOPE, KEYS)
    assert verified.manifest == MANIFEST
    assert verified.keyid == "k1"
    assert verified.payload == PAYLOAD
    assert verified.root.hex() == MANIFEST["merkle"]["root"]
    assert (verified.document_checked, verified.text_checked) == (False, False)
    # As `conductor rag verify` reads it: a JSON file.
    assert verify_envelope(json.loads(json.dumps(ENVELOPE)), KEYS).manifest == MANIFEST


def test_a_markdown_upload_is_its_own_text() -> None:
    verified = verify_envelope(ENVELOPE, KEYS, document=TEXT)
    assert (verified.document_checked, verified.text_checked) == (True, True)
    assert verify_envelope(ENVELOPE, KEYS, text=TEXT).text_checked


def test_an_upload_with_a_separate_rendition_checks_each_when_given() -> None:
    pdf = b"%PDF-1.7 not really, but not the text either"
    envelope = sign_envelope(_manifest(document=pdf, media_type="application/pdf"), KEY, "k1")
    verified = verify_envelope(envelope, KEYS, document=pdf)
    assert (verified.document_checked, verified.text_checked) == (True, False)
    assert verify_envelope(envelope, KEYS, document=pdf, text=TEXT).text_checked
    _fails("document_digest", envelope, document=TEXT)
    _fails("text_digest", envelope, document=pdf, text=TEXT + b"\n")


@FLIPS
@given(st.integers(0, len(TEXT) - 1), st.integers(1, 255))
def test_any_changed_byte_of_the_document_is_caught(position: int, mask: int) -> None:
    _fails("document_digest", ENVELOPE, document=_flip(TEXT, position, mask))


@FLIPS
@given(st.integers(0, len(TEXT) - 1), st.integers(1, 255))
def test_any_changed_byte_of_the_text_names_its_chunk(position: int, mask: int) -> None:
    inside = [
        chunk for chunk in MANIFEST["chunks"] if chunk["byte_start"] <= position < chunk["byte_end"]
    ]
    error = _fails(
        "chunk_digest" if inside else "text_digest", ENVELOPE, text=_flip(TEXT, position, mask)
    )
    if inside:
        assert f"chunk {inside[0]['index']} " in error.problem


def test_a_text_of_another_length_is_another_text() -> None:
    _fails("text_digest", ENVELOPE, text=TEXT[:-1])
    _fails("text_digest", ENVELOPE, text=b"")


@FLIPS
@given(st.integers(0, len(PAYLOAD) - 1), st.integers(1, 255))
def test_any_changed_byte_of_the_payload_breaks_the_signature(position: int, mask: int) -> None:
    envelope = {**ENVELOPE, "payload": base64.b64encode(_flip(PAYLOAD, position, mask)).decode()}
    _fails("signature", envelope)


@FLIPS
@given(st.integers(0, 63), st.integers(1, 255))
def test_any_changed_byte_of_the_signature_breaks_it(position: int, mask: int) -> None:
    signature = base64.b64decode(ENVELOPE["signatures"][0]["sig"])
    changed = base64.b64encode(_flip(signature, position, mask)).decode()
    _fails("signature", {**ENVELOPE, "signatures": [{"keyid": "k1", "sig": changed}]})


def test_another_keys_signature_fails() -> None:
    impostor = Ed25519PrivateKey.generate()
    _fails("signature", sign_envelope(MANIFEST, impostor, "k1"))
    error = _fails("unknown_key", sign_envelope(MANIFEST, impostor, "k9"))
    assert "k9" in error.problem
    with pytest.raises(ManifestInvalid) as caught:
        verify_envelope(ENVELOPE, {})
    assert caught.value.check == "unknown_key"


def test_a_rotated_ring_still_verifies_what_the_previous_key_signed() -> None:
    old, new = keys.generate_key("EdDSA"), keys.generate_key("EdDSA")
    assert isinstance(old.private_key, Ed25519PrivateKey)
    signed_before = sign_envelope(MANIFEST, old.private_key, old.kid)
    ring = keys.KeyRing(new, previous=old)
    published = ed25519_keys(ring.jwks())
    assert set(published) == {old.kid, new.kid}
    assert verify_envelope(signed_before, published).keyid == old.kid
    # Once the previous key is retired and no longer published, its manifests name it.
    retired = ed25519_keys(keys.KeyRing(new).jwks())
    with pytest.raises(ManifestInvalid) as caught:
        verify_envelope(signed_before, retired)
    assert caught.value.check == "unknown_key"


def test_the_keyid_is_a_hint_only() -> None:
    unnamed = copy.deepcopy(ENVELOPE)
    del unnamed["signatures"][0]["keyid"]
    assert verify_envelope(unnamed, {"other": KEYS["k1"]}).keyid == "other"
    both = copy.deepcopy(ENVELOPE)
    both["signatures"].insert(0, {"keyid": "k9", "sig": both["signatures"][0]["sig"]})
    assert verify_envelope(both, KEYS).keyid == "k1"


def test_url_safe_unpadded_base64_is_accepted() -> None:
    def url_safe(value: str) -> str:
        return value.replace("+", "-").replace("/", "_").rstrip("=")

    envelope = {
        **ENVELOPE,
        "payload": url_safe(ENVELOPE["payload"]),
        "signatures": [{"keyid": "k1", "sig": url_safe(ENVELOPE["signatures"][0]["sig"])}],
    }
    assert verify_envelope(envelope, KEYS).manifest == MANIFEST


def test_jwks_yield_ed25519_keys_only() -> None:
    ec = keys.generate_key("ES256")
    ed = keys.generate_key("EdDSA")
    with_private = {**ed.public_jwk(), "d": "ignored"}
    assert set(ed25519_keys([ec.public_jwk(), with_private])) == {ed.kid}
    with pytest.raises(ValueError, match="no kid"):
        ed25519_keys([{"kty": "OKP", "crv": "Ed25519", "x": with_private["x"]}])
    with pytest.raises(ValueError, match="no valid Ed25519"):
        ed25519_keys([{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "AAAA"}])


@pytest.mark.parametrize(
    ("envelope", "check"),
    [
        ([], "envelope"),
        ({**ENVELOPE, "payload": None}, "envelope"),
        ({**ENVELOPE, "payload": "not base64!"}, "envelope"),
        ({**ENVELOPE, "signatures": []}, "envelope"),
        ({**ENVELOPE, "signatures": ["sig"]}, "envelope"),
        ({**ENVELOPE, "signatures": [{"keyid": "k1"}]}, "envelope"),
        ({**ENVELOPE, "signatures": [{"keyid": "k1", "sig": "%%"}]}, "envelope"),
        ({**ENVELOPE, "payloadType": "application/json"}, "payload_type"),
    ],
)
def test_a_malformed_envelope_is_refused(envelope: Any, check: str) -> None:
    _fails(check, envelope)


def test_unknown_envelope_fields_are_ignored() -> None:
    assert verify_envelope({**ENVELOPE, "note": "DSSE consumers ignore it"}, KEYS).keyid == "k1"


@pytest.mark.parametrize(
    "serialise",
    [
        pytest.param(lambda m: json.dumps(m).encode(), id="spaces"),
        pytest.param(lambda m: json.dumps(m, separators=(",", ":")).encode(), id="key-order"),
        pytest.param(
            lambda m: _canonical(m).replace(b"legal-review", b"legal\\u002dreview"), id="escape"
        ),
        pytest.param(lambda m: _canonical(m) + b"\n", id="trailing-newline"),
        pytest.param(lambda m: b'{"_type":1,' + _canonical(m)[1:], id="duplicate-key"),
        pytest.param(lambda m: _canonical(m).replace(b'"version":1', b'"version":1.0'), id="1.0"),
        pytest.param(lambda m: _canonical(m).replace(b'"version":1', b'"version":NaN'), id="NaN"),
        pytest.param(lambda m: _canonical(m).decode().encode("utf-16"), id="utf-16"),
        pytest.param(lambda m: _canonical(m)[:-1], id="truncated"),
    ],
)
def test_a_payload_not_in_canonical_form_is_refused(
    serialise: Callable[[dict[str, Any]], bytes],
) -> None:
    payload = serialise(MANIFEST)
    assert payload != PAYLOAD
    _fails("canonical", _signed(payload))


def _mutated(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    manifest = copy.deepcopy(MANIFEST)
    change(manifest)
    return _signed(_canonical(manifest))


def _swap_chunks(manifest: dict[str, Any]) -> None:
    manifest["chunks"][0], manifest["chunks"][1] = manifest["chunks"][1], manifest["chunks"][0]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: m.pop("output"), id="missing-field"),
        pytest.param(lambda m: m.update(extra=1), id="unknown-field"),
        pytest.param(lambda m: m.update(_type="https://intelgraph.dev/rag/manifest/v2"), id="type"),
        pytest.param(lambda m: m["document"].update(size_bytes=True), id="bool-as-int"),
        pytest.param(lambda m: m["document"].update(sha256="AB" * 32), id="uppercase-hex"),
        pytest.param(lambda m: m["document"].update(id="not-a-uuid"), id="uuid"),
        pytest.param(_swap_chunks, id="chunk-order"),
        pytest.param(lambda m: m["chunks"][0].update(index=1), id="chunk-index"),
        pytest.param(lambda m: m["chunks"][0].update(byte_start=-1), id="negative-start"),
        pytest.param(lambda m: m["chunks"][0].update(byte_end=1), id="start-after-end"),
        pytest.param(lambda m: m["chunks"][-1].update(byte_end=len(TEXT) + 1), id="past-text"),
        pytest.param(lambda m: m["chunks"][1].update(id=m["chunks"][0]["id"]), id="shared-id"),
        pytest.param(lambda m: m["merkle"].update(size=7), id="merkle-size"),
        pytest.param(lambda m: m["merkle"].update(algorithm="sha256"), id="merkle-algorithm"),
        pytest.param(lambda m: m["purpose"].update(version=0), id="purpose-version"),
        pytest.param(lambda m: m["redactions"].update(email=-1), id="redaction-count"),
        pytest.param(lambda m: m.update(issued_at="2026-11-30 23:59:59"), id="time-format"),
        pytest.param(lambda m: m.update(issued_at="2026-02-30T00:00:00Z"), id="time-instant"),
        pytest.param(lambda m: m.update(chunks={}), id="chunks-object"),
    ],
)
def test_a_manifest_off_the_schema_is_refused(change: Callable[[dict[str, Any]], object]) -> None:
    _fails("schema", _mutated(change))


def test_a_payload_that_is_no_object_is_refused() -> None:
    _fails("schema", _signed(b"[]"))


def test_a_root_that_is_not_the_listed_chunks_root_is_refused() -> None:
    _fails("merkle_root", _mutated(lambda m: m["merkle"].update(root="00" * 32)))
    _fails("merkle_root", _mutated(lambda m: m["chunks"][3].update(leaf="11" * 32)))
    _fails("merkle_root", _mutated(lambda m: m["chunks"].pop() and m["merkle"].update(size=7)))


def test_a_listed_digest_that_is_not_the_texts_is_caught() -> None:
    # Signed, consistent with its root, but the chunk's own digest was made up.
    _fails("chunk_digest", _mutated(lambda m: m["chunks"][2].update(sha256="22" * 32)), text=TEXT)


def _verified() -> VerifiedManifest:
    return verify_envelope(ENVELOPE, KEYS)


def test_every_chunk_proves_its_inclusion() -> None:
    verified = _verified()
    for chunk in MANIFEST["chunks"]:
        index = chunk["index"]
        piece = TEXT[chunk["byte_start"] : chunk["byte_end"]]
        proof = chunk_inclusion_proof(MANIFEST, index)
        assert len(proof) <= math.ceil(math.log2(len(MANIFEST["chunks"])))
        verify_chunk_inclusion(verified, piece, index, proof)


def test_a_chunk_at_the_wrong_place_or_changed_does_not() -> None:
    verified = _verified()
    chunk = MANIFEST["chunks"][5]
    piece = TEXT[chunk["byte_start"] : chunk["byte_end"]]
    proof = chunk_inclusion_proof(MANIFEST, 5)
    for index, data in [(4, piece), (6, piece), (8, piece), (5, piece + b" "), (5, piece[1:])]:
        with pytest.raises(ManifestInvalid) as caught:
            verify_chunk_inclusion(verified, data, index, proof)
        assert caught.value.check == "inclusion"
    with pytest.raises(ManifestInvalid):
        verify_chunk_inclusion(verified, piece, 5, proof[:-1])


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"issued_at": datetime(2026, 11, 30)}, "aware"),  # noqa: DTZ001 - the naive time is the point
        ({"chunks": [ManifestChunk(uuid.UUID(int=9), 0, 0, len(TEXT) + 1)]}, "outside"),
        ({"chunks": [ManifestChunk(uuid.UUID(int=9), 1, 0, 1)]}, "index"),
        ({"purpose_version": 0}, "purpose.version"),
    ],
)
def test_the_builder_refuses_what_verifiers_would(changes: dict[str, Any], problem: str) -> None:
    arguments: dict[str, Any] = {
        "document": ManifestDocument(uuid.UUID(int=1), "00" * 32, "text/plain", 0),
        "chunks": [],
        "text": TEXT,
        "purpose_id": "legal-review",
        "purpose_version": 1,
        "redactions": {},
        "output_kind": "summary",
        "output_media_type": "text/plain",
        "output": b"",
        "issued_at": datetime(2026, 11, 30, tzinfo=UTC),
    }
    with pytest.raises(ValueError, match=problem):
        build_manifest(**(arguments | changes))


def test_times_are_written_in_utc() -> None:
    manifest = build_manifest(
        document=ManifestDocument(uuid.UUID(int=1), "00" * 32, "text/plain", 0),
        chunks=[],
        text=b"",
        purpose_id="p",
        purpose_version=1,
        redactions={},
        output_kind="summary",
        output_media_type="text/plain",
        output=b"",
        issued_at=datetime(2026, 12, 1, 3, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    assert manifest["issued_at"].startswith("2026-12-01T01:00:00")
    assert manifest["merkle"]["root"] == hashlib.sha256(b"").hexdigest()
    assert verify_envelope(sign_envelope(manifest, KEY, "k1"), KEYS, text=b"").text_checked
