r"""Proof manifests: what a Rag answer was built from, signed so anyone can check it offline.

A manifest states a document's digests, the byte range and digest of every
chunk of its text rendition, a Merkle root over the chunks (RFC 9162 §2.1,
the Certificate Transparency tree), the purpose it was processed for, the
redactions made and the digest of the output. Its signed bytes are its RFC 8785
canonical JSON, so any party that parses and re-serialises it gets the same
bytes; they travel in a DSSE envelope (payload type
`application/vnd.intelgraph.rag-manifest+json`) signed with Ed25519.

Verification needs no server and no database: the envelope, the public keys
(a JWKS) and, optionally, the uploaded document or its text rendition. It
stops at the first check that fails and names it (`ManifestInvalid.check`), so
the `VerifyManifest` RPC and `conductor rag verify` can say what is wrong.
A single chunk can be checked against the signed root with its audit path
alone (`inclusion_proof`, `verify_chunk_inclusion`).

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from datetime import UTC
>>> key = Ed25519PrivateKey.generate()
>>> text = b"# Notes\nAlice met Bob.\n"
>>> manifest = build_manifest(
...     document=ManifestDocument(
...         id=uuid.UUID(int=1),
...         sha256=hashlib.sha256(text).hexdigest(),
...         media_type="text/markdown",
...         size_bytes=len(text),
...     ),
...     chunks=[
...         ManifestChunk(uuid.UUID(int=2), index=0, byte_start=0, byte_end=8),
...         ManifestChunk(uuid.UUID(int=3), index=1, byte_start=8, byte_end=23),
...     ],
...     text=text,
...     purpose_id="legal-review",
...     purpose_version=1,
...     redactions={},
...     output_kind="summary",
...     output_media_type="text/markdown",
...     output=b"Alice met Bob.",
...     issued_at=datetime(2026, 11, 30, tzinfo=UTC),
... )
>>> envelope = sign_envelope(manifest, key, "k1")
>>> verified = verify_envelope(envelope, {"k1": key.public_key()}, document=text)
>>> verified.keyid, verified.text_checked
('k1', True)
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core import dsse
from core.times import rfc3339
from interceptors import keys

#: The DSSE payload type of a signed manifest (encoding and schema in one name).
PAYLOAD_TYPE = "application/vnd.intelgraph.rag-manifest+json"
#: The manifest's own `_type`: the schema version its fields follow.
MANIFEST_TYPE = "https://intelgraph.dev/rag/manifest/v1"
#: How `merkle.root` is computed.
MERKLE_ALGORITHM = "rfc6962-sha256"
#: The root of a tree without leaves: SHA-256 of nothing (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

_HASH_SIZE = 32
# RFC 9162's domain separation: a leaf can never be mistaken for an inner node.
_LEAF_PREFIX = hashlib.sha256(b"\x00")
_NODE_PREFIX = b"\x01"

Check: TypeAlias = Literal[
    "envelope",
    "payload_type",
    "unknown_key",
    "signature",
    "canonical",
    "schema",
    "merkle_root",
    "chunk_digest",
    "document_digest",
    "text_digest",
    "inclusion",
]


class ManifestInvalid(Exception):
    """A manifest, its envelope or the bytes it vouches for failed a check.

    Attributes:
        check: Which check failed, for machines (the RPC's and the CLI's callers).
        problem: What failed, as a sentence for people.
    """

    def __init__(self, check: Check, problem: str) -> None:
        super().__init__(problem)
        self.check: Check = check
        self.problem = problem


# -- Merkle tree (RFC 9162 §2.1) ------------------------------------------------------------


def leaf_hash(data: bytes | memoryview) -> bytes:
    """The Merkle leaf hash of `data`: SHA-256(0x00 ‖ data).

    >>> leaf_hash(b"").hex()
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d'
    """
    digest = _LEAF_PREFIX.copy()  # no copy of `data` to prepend the prefix
    digest.update(data)
    return digest.digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_hashes(leaf_hashes: Sequence[bytes]) -> None:
    for position, value in enumerate(leaf_hashes):
        if len(value) != _HASH_SIZE:
            raise ValueError(f"leaf hash {position} has {len(value)} bytes, not {_HASH_SIZE}")


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of leaves given by their leaf hashes.

    Built bottom up, one level at a time (n - 1 node hashes): pairing
    neighbours left to right and lifting an unpaired last node unchanged
    yields exactly RFC 9162's tree, whose left subtree always holds the
    largest power of two of leaves below n.

    >>> one = leaf_hash(b"chunk")
    >>> merkle_root([one]) == one
    True
    >>> merkle_root([]) == EMPTY_ROOT
    True

    Raises:
        ValueError: A leaf hash is not 32 bytes.
    """
    _check_hashes(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        parents = [_node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
    return level[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` (RFC 9162 §2.1.3.1), nearest the leaf first.

    Each level contributes the sibling of the node on the leaf's path, unless
    that node is a lifted, unpaired last node; so the path has at most
    ceil(log2 n) hashes.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(3)]
    >>> proof = inclusion_proof(leaves, 2)
    >>> len(proof), verify_inclusion(leaves[2], 2, 3, proof, merkle_root(leaves))
    (1, True)

    Raises:
        IndexError: `index` is not a leaf of the tree.
        ValueError: A leaf hash is not 32 bytes.
    """
    if not 0 <= index < len(leaf_hashes):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaf_hashes)} leaves")
    _check_hashes(leaf_hashes)
    proof: list[bytes] = []
    level = list(leaf_hashes)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        parents = [_node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
        index //= 2
    return proof


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `proof` shows leaf hash `leaf` at `index` of the tree of `tree_size` with `root`.

    RFC 9162 §2.1.3.2, step by step. `leaf` is the leaf's hash
    (`leaf_hash(data)`), as in the RFC, not the leaf's bytes.

    >>> leaves = [leaf_hash(b"a"), leaf_hash(b"b")]
    >>> root = merkle_root(leaves)
    >>> verify_inclusion(leaves[0], 0, 2, [leaves[1]], root)
    True
    >>> verify_inclusion(leaves[0], 1, 2, [leaves[1]], root)
    False
    """
    if not 0 <= index < tree_size:
        return False
    if len(leaf) != _HASH_SIZE or any(len(step) != _HASH_SIZE for step in proof):
        return False
    fn, sn = index, tree_size - 1
    result = leaf
    for step in proof:
        if sn == 0:  # the path is longer than the tree is deep
            return False
        if fn & 1 or fn == sn:
            result = _node_hash(step, result)
            if not fn & 1:
                # A right-edge node lifted unpaired: skip the levels where it has no sibling.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = _node_hash(result, step)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root


# -- The manifest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestDocument:
    """The uploaded document a manifest speaks for.

    Attributes:
        id: The document's id.
        sha256: Lowercase hex SHA-256 of the uploaded bytes (computed as they streamed in).
        media_type: The upload's media type, e.g. `application/pdf`.
        size_bytes: The upload's length.
    """

    id: uuid.UUID
    sha256: str
    media_type: str
    size_bytes: int


@dataclass(frozen=True)
class ManifestChunk:
    """One chunk: a byte range of the document's UTF-8 text rendition.

    Attributes:
        id: The chunk's id.
        index: Its position among the document's chunks, from 0.
        byte_start: First byte of the chunk in the text rendition.
        byte_end: One past its last byte.
    """

    id: uuid.UUID
    index: int
    byte_start: int
    byte_end: int


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_manifest(
    *,
    document: ManifestDocument,
    chunks: Sequence[ManifestChunk],
    text: bytes,
    purpose_id: str,
    purpose_version: int,
    redactions: Mapping[str, int],
    output_kind: str,
    output_media_type: str,
    output: bytes,
    issued_at: datetime,
) -> dict[str, Any]:
    """The manifest of one output: every digest computed here, from the bytes themselves.

    Args:
        document: The upload (its digest was taken as it streamed in).
        chunks: The chunks, in index order, as byte ranges of `text`.
        text: The UTF-8 text rendition the chunks index (the upload itself for
            plain text and Markdown).
        purpose_id: The purpose template the output was made for.
        purpose_version: That template's version.
        redactions: How many matches of each PII kind were redacted.
        output_kind: What the output is, e.g. `summary`.
        output_media_type: The output's media type.
        output: The output's exact bytes.
        issued_at: When the manifest is issued (an aware datetime).

    Returns:
        The manifest as JSON data, ready for `sign_envelope`.

    Raises:
        ValueError: The inputs cannot make a valid manifest (chunks out of
            order or outside the text, a naive time, a malformed digest...).
    """
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be an aware datetime")
    view = memoryview(text)
    listed, leaves = [], []
    for chunk in chunks:
        if not 0 <= chunk.byte_start <= chunk.byte_end <= len(text):
            raise ValueError(
                f"chunk {chunk.index} spans bytes {chunk.byte_start}..{chunk.byte_end},"
                f" outside the {len(text)} bytes of the text"
            )
        piece = view[chunk.byte_start : chunk.byte_end]
        leaves.append(leaf_hash(piece))
        listed.append(
            {
                "id": str(chunk.id),
                "index": chunk.index,
                "byte_start": chunk.byte_start,
                "byte_end": chunk.byte_end,
                "sha256": hashlib.sha256(piece).hexdigest(),
                "leaf": leaves[-1].hex(),
            }
        )
    manifest: dict[str, Any] = {
        "_type": MANIFEST_TYPE,
        "document": {
            "id": str(document.id),
            "sha256": document.sha256,
            "text_sha256": _sha256_hex(text),
            "media_type": document.media_type,
            "size_bytes": document.size_bytes,
            "text_bytes": len(text),
        },
        "chunks": listed,
        "merkle": {
            "algorithm": MERKLE_ALGORITHM,
            "root": merkle_root(leaves).hex(),
            "size": len(listed),
        },
        "purpose": {"id": purpose_id, "version": purpose_version},
        "redactions": dict(redactions),
        "output": {
            "kind": output_kind,
            "media_type": output_media_type,
            "sha256": _sha256_hex(output),
        },
        "issued_at": rfc3339(issued_at),
    }
    # One definition of a valid manifest: what we sign must pass what verifiers check.
    try:
        _check_schema(manifest)
    except ManifestInvalid as error:
        raise ValueError(error.problem) from None
    return manifest


def chunk_inclusion_proof(manifest: Mapping[str, Any], index: int) -> list[bytes]:
    """The audit path of chunk `index` in a manifest, for a reader given only that chunk.

    Raises:
        IndexError: The manifest has no chunk `index`.
    """
    return inclusion_proof([bytes.fromhex(chunk["leaf"]) for chunk in manifest["chunks"]], index)


# -- Schema ----------------------------------------------------------------------------------

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")
_MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 refuses larger integers anyway

_FIELDS = {
    "": frozenset(
        {"_type", "document", "chunks", "merkle", "purpose", "redactions", "output", "issued_at"}
    ),
    "document": frozenset(
        {"id", "sha256", "text_sha256", "media_type", "size_bytes", "text_bytes"}
    ),
    "chunk": frozenset({"id", "index", "byte_start", "byte_end", "sha256", "leaf"}),
    "merkle": frozenset({"algorithm", "root", "size"}),
    "purpose": frozenset({"id", "version"}),
    "output": frozenset({"kind", "media_type", "sha256"}),
}


def _schema_error(problem: str) -> ManifestInvalid:
    return ManifestInvalid("schema", problem)


def _object(value: Any, where: str, fields: str) -> Mapping[str, Any]:
    # Exactly the known fields: an unknown one would be a claim no verifier checks.
    if not isinstance(value, dict):
        raise _schema_error(f"{where} is not a JSON object")
    if value.keys() != _FIELDS[fields]:
        missing = ", ".join(sorted(_FIELDS[fields] - value.keys()))
        unknown = ", ".join(sorted(value.keys() - _FIELDS[fields]))
        wrong = [f"lacks {missing}" if missing else "", f"has unknown {unknown}" if unknown else ""]
        raise _schema_error(f"{where} {' and '.join(filter(None, wrong))}")
    return value


def _count(value: Any, where: str, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= _MAX_SAFE_INTEGER:  # bool is no count
        raise _schema_error(f"{where} is not an integer of at least {minimum}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _schema_error(f"{where} is not a non-empty string")
    return value


def _matching(value: Any, pattern: re.Pattern[str], where: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _schema_error(f"{where} is not {what}")
    return value


def _check_document(value: Any) -> int:
    document = _object(value, "document", "document")
    _matching(document["id"], _UUID, "document.id", "a lowercase UUID")
    _matching(document["sha256"], _HEX_SHA256, "document.sha256", "lowercase hex SHA-256")
    _matching(document["text_sha256"], _HEX_SHA256, "document.text_sha256", "lowercase hex SHA-256")
    _text(document["media_type"], "document.media_type")
    _count(document["size_bytes"], "document.size_bytes")
    return _count(document["text_bytes"], "document.text_bytes")


def _check_listed_chunks(chunks: Any, text_bytes: int) -> int:
    if not isinstance(chunks, list):
        raise _schema_error("chunks is not a JSON array")
    seen: set[str] = set()
    for position, value in enumerate(chunks):
        where = f"chunks[{position}]"
        chunk = _object(value, where, "chunk")
        seen.add(_matching(chunk["id"], _UUID, f"{where}.id", "a lowercase UUID"))
        if type(chunk["index"]) is not int or chunk["index"] != position:
            raise _schema_error(f"{where}.index is not {position}: chunks are listed in order")
        start = _count(chunk["byte_start"], f"{where}.byte_start")
        end = _count(chunk["byte_end"], f"{where}.byte_end")
        if not start <= end <= text_bytes:
            raise _schema_error(
                f"{where} spans bytes {start}..{end}, not a range of the {text_bytes}-byte text"
            )
        _matching(chunk["sha256"], _HEX_SHA256, f"{where}.sha256", "lowercase hex SHA-256")
        _matching(chunk["leaf"], _HEX_SHA256, f"{where}.leaf", "a lowercase hex leaf hash")
    if len(seen) != len(chunks):
        raise _schema_error("two chunks share an id")
    return len(chunks)


def _check_merkle(value: Any, chunk_count: int) -> None:
    merkle = _object(value, "merkle", "merkle")
    if merkle["algorithm"] != MERKLE_ALGORITHM:
        raise _schema_error(
            f"merkle.algorithm is {merkle['algorithm']!r}, not {MERKLE_ALGORITHM!r}"
        )
    _matching(merkle["root"], _HEX_SHA256, "merkle.root", "a lowercase hex hash")
    if _count(merkle["size"], "merkle.size") != chunk_count:
        raise _schema_error(f"merkle.size is {merkle['size']}, but {chunk_count} chunks are listed")


def _check_output(top: Mapping[str, Any]) -> None:
    purpose = _object(top["purpose"], "purpose", "purpose")
    _text(purpose["id"], "purpose.id")
    _count(purpose["version"], "purpose.version", minimum=1)
    redactions = top["redactions"]
    if not isinstance(redactions, dict):
        raise _schema_error("redactions is not a JSON object")
    for kind, count in redactions.items():
        _text(kind, "a redaction kind")
        _count(count, f"redactions.{kind}")
    output = _object(top["output"], "output", "output")
    _text(output["kind"], "output.kind")
    _text(output["media_type"], "output.media_type")
    _matching(output["sha256"], _HEX_SHA256, "output.sha256", "lowercase hex SHA-256")
    issued_at = _matching(
        top["issued_at"], _RFC3339_UTC, "issued_at", "an RFC 3339 UTC time ending in Z"
    )
    try:
        datetime.fromisoformat(issued_at)
    except ValueError:
        raise _schema_error(f"issued_at {issued_at!r} is not a real instant") from None


def _check_schema(manifest: Any) -> None:
    """Refuse (check "schema") anything but exactly the v1 shape, every field typed and bounded."""
    top = _object(manifest, "the manifest", "")
    if top["_type"] != MANIFEST_TYPE:
        raise _schema_error(f"_type is {top['_type']!r}, not {MANIFEST_TYPE!r}")
    text_bytes = _check_document(top["document"])
    chunk_count = _check_listed_chunks(top["chunks"], text_bytes)
    _check_merkle(top["merkle"], chunk_count)
    _check_output(top)


# -- DSSE envelope ---------------------------------------------------------------------------


#: DSSE's pre-authentication encoding: the bytes actually signed (binding the payload
#: type, so a manifest's signature can never be replayed as another kind of document).
pae = dsse.pae


def canonical_payload(manifest: Mapping[str, Any]) -> bytes:
    """The manifest's RFC 8785 canonical JSON: the serialised body that is signed.

    >>> canonical_payload({"b": 1, "a": ["é"]}).decode()
    '{"a":["é"],"b":1}'
    """
    return rfc8785.dumps(dict(manifest))


def sign_envelope(
    manifest: Mapping[str, Any], key: Ed25519PrivateKey, keyid: str
) -> dict[str, Any]:
    """A DSSE envelope of `manifest`, signed with `key`.

    Args:
        manifest: A manifest from `build_manifest`.
        key: The signing key.
        keyid: Its id, as verifiers find it in the JWKS (a hint, not trusted).

    Raises:
        ValueError: `manifest` is not a valid manifest.
    """
    try:
        _check_schema(manifest)
    except ManifestInvalid as error:
        raise ValueError(error.problem) from None
    return dsse.sign(canonical_payload(manifest), PAYLOAD_TYPE, key, keyid)


#: The Ed25519 public keys of a JWKS, by kid (one reader of JWKS for the whole platform).
ed25519_keys = keys.ed25519_public_keys


# -- Verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest whose signature, form, schema and Merkle root checked out.

    Attributes:
        manifest: The manifest as JSON data.
        keyid: The id of the key whose signature verified.
        payload: The exact signed bytes (its canonical JSON).
        leaves: The chunks' leaf hashes, in index order.
        root: The Merkle root over them (as signed).
        document_checked: The uploaded document was given and matched.
        text_checked: The text rendition was given (or was the document) and
            it and every chunk matched.
    """

    manifest: dict[str, Any]
    keyid: str
    payload: bytes
    leaves: tuple[bytes, ...]
    root: bytes
    document_checked: bool
    text_checked: bool


def _parse_canonical(body: bytes) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        manifest = json.loads(body.decode("utf-8"), parse_constant=refuse)
        canonical = rfc8785.dumps(manifest)
    except (ValueError, RecursionError):  # UnicodeDecodeError and RFC 8785's errors among them
        raise ManifestInvalid(
            "canonical", "the payload is not JSON that RFC 8785 can canonicalise"
        ) from None
    if canonical != body:
        # Two serialisations of one manifest would let the signed bytes and what
        # a reader's parser sees drift apart (duplicate keys, escapes, numbers).
        raise ManifestInvalid("canonical", "the payload is not in RFC 8785 canonical form")
    if not isinstance(manifest, dict):
        raise ManifestInvalid("schema", "the payload is not a JSON object")
    return manifest


def _check_chunks(manifest: Mapping[str, Any], text: bytes) -> None:
    view = memoryview(text)
    for chunk in manifest["chunks"]:
        piece = view[chunk["byte_start"] : chunk["byte_end"]]
        if (
            hashlib.sha256(piece).hexdigest() != chunk["sha256"]
            or leaf_hash(piece).hex() != chunk["leaf"]
        ):
            raise ManifestInvalid(
                "chunk_digest",
                f"chunk {chunk['index']} (bytes {chunk['byte_start']}..{chunk['byte_end']})"
                " differs from the text that was signed",
            )


def verify_envelope(
    envelope: Mapping[str, Any],
    keys_by_id: Mapping[str, Ed25519PublicKey],
    *,
    document: bytes | None = None,
    text: bytes | None = None,
) -> VerifiedManifest:
    """The signed manifest in `envelope`, once every check that the inputs allow has passed.

    Checks in order: the envelope's shape; its payload type; a signature by a
    known key over the payload; the payload is RFC 8785 canonical JSON; the
    schema; the Merkle root over the listed leaves. Then, if given, the
    document's digest and size; and the text's length, each chunk's digest
    and leaf, and the text's digest. When the document's digest is also the
    text's (plain text and Markdown, where the upload is the rendition), the
    document serves as the text.

    The text's length is checked before the chunks, so a different text is
    reported as such; a same-length edit is reported as the chunk it touched
    ("chunk_digest"), and one outside every chunk as "text_digest".

    Args:
        envelope: The DSSE envelope, as parsed JSON.
        keys_by_id: The public keys that may have signed it (`ed25519_keys`).
        document: The uploaded document's bytes, to check against the manifest.
        text: The text rendition's bytes, to check with every chunk.

    Raises:
        ManifestInvalid: The first check that failed, in `check` and `problem`.
    """
    try:
        opened = dsse.open_envelope(envelope)
        keyid = dsse.verify(opened, PAYLOAD_TYPE, keys_by_id)
    except dsse.EnvelopeInvalid as error:
        raise ManifestInvalid(error.check, error.problem) from None
    body = opened.body
    manifest = _parse_canonical(body)
    _check_schema(manifest)

    leaves = tuple(bytes.fromhex(chunk["leaf"]) for chunk in manifest["chunks"])
    root = merkle_root(leaves)
    if root.hex() != manifest["merkle"]["root"]:
        raise ManifestInvalid("merkle_root", "the Merkle root is not that of the listed chunks")

    facts = manifest["document"]
    text_digest: str | None = None
    if document is not None:
        document_digest = _sha256_hex(document)
        if document_digest != facts["sha256"] or len(document) != facts["size_bytes"]:
            raise ManifestInvalid("document_digest", "the document is not the one signed")
        if text is None and document_digest == facts["text_sha256"]:
            text, text_digest = document, document_digest
    if text is not None:
        if len(text) != facts["text_bytes"]:
            raise ManifestInvalid(
                "text_digest",
                f"the text has {len(text)} bytes, the signed one {facts['text_bytes']}",
            )
        _check_chunks(manifest, text)
        if (text_digest or _sha256_hex(text)) != facts["text_sha256"]:
            raise ManifestInvalid("text_digest", "the text is not the one signed")
    return VerifiedManifest(
        manifest=manifest,
        keyid=keyid,
        payload=body,
        leaves=leaves,
        root=root,
        document_checked=document is not None,
        text_checked=text is not None,
    )


def verify_chunk_inclusion(
    verified: VerifiedManifest, chunk: bytes, index: int, proof: Sequence[bytes]
) -> None:
    """Check that `chunk` is chunk `index` of a verified manifest, by its audit path alone.

    Takes a `VerifiedManifest` so the root trusted here is one whose signature
    was checked.

    Raises:
        ManifestInvalid: ("inclusion") The path does not lead from the chunk to the signed root.
    """
    if not verify_inclusion(leaf_hash(chunk), index, len(verified.leaves), proof, verified.root):
        raise ManifestInvalid(
            "inclusion", f"the chunk is not chunk {index} of the signed tree, or the proof is wrong"
        )
