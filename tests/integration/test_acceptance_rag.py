"""The RAG acceptance lane against an in-process platform; and its judgments failing on bad data."""

from __future__ import annotations

import base64
import doctest
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from intelgraph.sdk import rag as pb

from core import dsse
from servers.acceptance import rag
from servers.rag import proofs
from tests.support.acceptance import failures, run_lane
from tests.support.serving import serving

CHECKS = {rag.LINEAGE, rag.PROOFS, rag.RESUMABLE, rag.NO_PII}
RAW = ("manifest", "proofs", "jwks", "upload", "pii")
#: A JSON Web Token: a header and claims (base64url JSON objects) and a signature.
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


async def test_the_lane_passes_and_writes_its_raw_results(tmp_path: Path) -> None:
    async with serving(tmp_path / "var", services="rag") as platform:
        checks = await run_lane(platform, "rag", tmp_path / "out")
    assert failures(checks) == []
    assert {check.name for check in checks} == CHECKS
    raw = tmp_path / "out" / "raw" / "rag"
    found = {name: json.loads((raw / f"{name}.json").read_text()) for name in RAW}
    assert found["manifest"]["payloadType"] == rag.MANIFEST_PAYLOAD_TYPE
    assert found["jwks"]["keys"]
    assert all(proof["verified"] for proof in found["proofs"]["proofs"])
    assert all(case["refused"] for case in found["proofs"]["tampered"])
    assert all(upload["resumed"] for upload in found["upload"]["uploads"])
    planted = found["pii"]["planted"]
    assert {value["kind"] for value in planted} >= {"email", "phone", "person", "secret"}
    assert all(value["found_in"] == [] for value in planted)
    written = "".join((raw / f"{name}.json").read_text() for name in RAW)
    assert not any(value.value in written for value in rag.PLANTED)  # hashed or masked only
    assert not JWT.search(written)  # no bearer token either
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["lanes"] == ["rag"]


# -- each judgment can fail ------------------------------------------------------------------


TEXT = b"# Notes\n\nThe caf\xc3\xa9 opened. The caf\xc3\xa9 opened again.\n"


def chunk(index: int, start: int, end: int, *, chunk_id: str, text: bytes = TEXT) -> pb.Chunk:
    piece = text[start:end]
    return pb.Chunk(
        id=chunk_id,
        index=index,
        text=piece.decode(),
        sha256=hashlib.sha256(piece).hexdigest(),
        lineage=pb.Lineage(
            document_id="d1",
            document_sha256=hashlib.sha256(text).hexdigest(),
            byte_start=start,
            byte_end=end,
            char_start=len(text[:start].decode()),
            char_end=len(text[:end].decode()),
            anchor=f"c{index}",
        ),
    )


def linked(chunks: list[pb.Chunk]) -> list[pb.Chunk]:
    for position, item in enumerate(chunks):
        item.lineage.previous_chunk_id = chunks[position - 1].id if position else ""
        item.lineage.next_chunk_id = chunks[position + 1].id if position + 1 < len(chunks) else ""
    return chunks


def test_exact_chunks_pass_and_a_shifted_one_fails() -> None:
    chunks = linked([chunk(0, 0, 7, chunk_id="a"), chunk(1, 9, len(TEXT), chunk_id="b")])
    assert rag.chunk_problems(TEXT, "d1", chunks) == []
    chunks[1].lineage.byte_start += 1  # what a cursor gone wrong on repeated text looks like
    problems = rag.chunk_problems(TEXT, "d1", chunks)
    assert any("digest" in problem for problem in problems)


def test_a_manifest_with_another_output_digest_fails() -> None:
    chunks = linked([chunk(0, 0, len(TEXT), chunk_id="a")])
    digest = hashlib.sha256(TEXT).hexdigest()
    manifest = {
        "document": {"sha256": digest, "text_sha256": digest, "text_bytes": len(TEXT)},
        "chunks": [
            {
                "id": "a",
                "index": 0,
                "byte_start": 0,
                "byte_end": len(TEXT),
                "sha256": chunks[0].sha256,
            }
        ],
        "output": {"sha256": hashlib.sha256(b"the summary").hexdigest()},
    }
    assert rag.manifest_problems(manifest, TEXT, chunks, b"the summary") == []
    assert rag.manifest_problems(manifest, TEXT, chunks, b"another summary") == [
        "the manifest's output digest is not the summary's"
    ]


def signed_manifest(key: Ed25519PrivateKey) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A manifest of TEXT in one chunk, signed with `key`, and the JWKS that holds it."""
    piece = TEXT
    digest = hashlib.sha256(TEXT).hexdigest()
    manifest: dict[str, Any] = {
        "_type": rag.MANIFEST_TYPE,
        "document": {
            "id": "d1",
            "sha256": digest,
            "text_sha256": digest,
            "media_type": "text/markdown",
            "size_bytes": len(TEXT),
            "text_bytes": len(TEXT),
        },
        "chunks": [
            {
                "id": "a",
                "index": 0,
                "byte_start": 0,
                "byte_end": len(piece),
                "sha256": hashlib.sha256(piece).hexdigest(),
                "leaf": rag.leaf_hash(piece).hex(),
            }
        ],
        "merkle": {"algorithm": "rfc6962-sha256", "root": rag.leaf_hash(piece).hex(), "size": 1},
    }
    envelope = dsse.sign(rfc8785.dumps(manifest), rag.MANIFEST_PAYLOAD_TYPE, key, "k1")
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    return envelope, [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]


def test_offline_verification_refuses_tampering() -> None:
    key = Ed25519PrivateKey.generate()
    envelope, jwks = signed_manifest(key)
    verified = rag.verify_manifest_offline(envelope, jwks, TEXT)
    assert verified.keyid == "k1"

    with pytest.raises(rag.ProofRefused) as other_key:
        rag.verify_manifest_offline(envelope, signed_manifest(Ed25519PrivateKey.generate())[1])
    assert other_key.value.check == "signature"
    with pytest.raises(rag.ProofRefused) as document:
        rag.verify_manifest_offline(envelope, jwks, TEXT.replace(b"opened", b"closed"))
    assert document.value.check == "document_digest"
    edited = json.loads(base64.b64decode(str(envelope["payload"])))
    edited["merkle"]["root"] = "00" * 32
    forged = dsse.sign(rfc8785.dumps(edited), rag.MANIFEST_PAYLOAD_TYPE, key, "k1")
    with pytest.raises(rag.ProofRefused) as root:
        rag.verify_manifest_offline(forged, jwks)
    assert root.value.check == "merkle_root"  # signed, but not the root of its leaves
    spaced = dsse.sign(json.dumps(edited).encode(), rag.MANIFEST_PAYLOAD_TYPE, key, "k1")
    with pytest.raises(rag.ProofRefused) as canonical:
        rag.verify_manifest_offline(spaced, jwks)
    assert canonical.value.check == "canonical"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_inclusion_proofs_verify_and_refuse_what_is_not_in_the_tree(size: int) -> None:
    leaves = [rag.leaf_hash(b"chunk %d" % n) for n in range(size)]
    root = rag.merkle_root(leaves)
    for index in range(size):
        path = rag.audit_path(leaves, index)
        assert rag.verify_inclusion(leaves[index], index, size, path, root)
        assert not rag.verify_inclusion(rag.leaf_hash(b"forged"), index, size, path, root)
        if path:
            bent = [bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:]]
            assert not rag.verify_inclusion(leaves[index], index, size, bent, root)
        if size > 1:
            elsewhere = (index + 1) % size
            assert not rag.verify_inclusion(leaves[index], elsewhere, size, path, root)


def test_the_lanes_own_merkle_tree_is_the_platforms() -> None:
    for size in range(1, 18):
        leaves = [proofs.leaf_hash(b"chunk %d" % n) for n in range(size)]
        assert [rag.leaf_hash(b"chunk %d" % n) for n in range(size)] == leaves
        assert rag.merkle_root(leaves) == proofs.merkle_root(leaves)
        for index in range(size):
            assert rag.audit_path(leaves, index) == proofs.inclusion_proof(leaves, index)


def test_a_leaked_value_is_found_in_any_form_unless_the_purpose_keeps_its_kind() -> None:
    card = rag.Planted("payment_card", "4111 1111 1111 1111")
    name = rag.Planted("person", "Maria Keller")
    outputs = [
        rag.Output("clean", "card [PAYMENT_CARD], [PERSON] called"),
        rag.Output("card", '{"text": "card 4111-1111-1111-1111"}'),
        rag.Output("surname", "Dr. [PERSON] Keller called"),
        rag.Output("kept", "Maria Keller called", kept=frozenset({"person"})),
    ]
    found = rag.pii_found(outputs, [card, name])
    assert found == {card: ["card"], name: ["surname"]}


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(rag).failed == 0
