"""What checking a Rag proof manifest costs, against one bare Ed25519 verification.

Builds the manifest of a generated ~1 MB Markdown text cut into 1,000 chunks
(multi-byte characters included), signs it into a DSSE envelope, then times
`verify_envelope` without the text (signature, RFC 8785 form, schema, Merkle
root) and with it (every chunk's digest and leaf, the text's digest too). The
baseline, in the same run, is one Ed25519 verification of the same signed bytes
(the payload's PAE), which is what any signed format costs at least. Also
reported: re-canonicalising the parsed payload with `rfc8785` alone, the
largest single part of a verification. Variants alternate round by round, so
a noisy neighbour touches all of them alike; each figure is a median.

The last line is JSON: {"bench": "rag_manifest", "chunks", "text_bytes",
"payload_bytes", "verify_ms", "verify_with_text_ms", "baseline_ms", "ratio",
"canonicalise_ms", "canonical_share", "sign_ms", "rounds"} with ratio =
verify_ms / baseline_ms and canonical_share = canonicalise_ms / verify_ms
(target: verify_ms < 50).

    python bench/rag_manifest.py [--quick] [--rounds N] [--chunks N]

`--quick` runs 10 rounds (a few seconds here); the default is 40.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from servers.rag import proofs

# Words of one to four UTF-8 bytes a character, as real notes mix them.
WORDS = ("Alice", "Bob", "met", "résumé", "contract", "clause", "naïve", "🧾", "ledger", "notice")
CHUNK_BYTES = 1024
REPEATS_PER_ROUND = 5


def generated_text(chunks: int, seed: int = 7) -> tuple[bytes, list[proofs.ManifestChunk]]:
    """Markdown of `chunks` paragraphs of about CHUNK_BYTES each, and a chunk per paragraph."""
    rng = random.Random(seed)
    parts, listed, position = [], [], 0
    for index in range(chunks):
        words: list[str] = []
        while len(" ".join(words).encode()) < CHUNK_BYTES:
            words.append(rng.choice(WORDS))
        paragraph = (" ".join(words) + "\n").encode()
        listed.append(
            proofs.ManifestChunk(
                uuid.UUID(int=rng.getrandbits(128), version=4),
                index,
                position,
                position + len(paragraph),
            )
        )
        parts.append(paragraph + b"\n")  # the blank line between paragraphs is in no chunk
        position += len(paragraph) + 1
    return b"".join(parts), listed


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds (a few seconds)")
    parser.add_argument("--rounds", type=int, help="alternating rounds over every variant")
    parser.add_argument("--chunks", type=int, default=1000)
    args = parser.parse_args()
    rounds = args.rounds or (10 if args.quick else 40)

    text, chunks = generated_text(args.chunks)
    key = Ed25519PrivateKey.generate()
    keys_by_id = {"bench": key.public_key()}
    manifest = proofs.build_manifest(
        document=proofs.ManifestDocument(
            id=uuid.UUID(int=1, version=4),
            sha256=hashlib.sha256(text).hexdigest(),
            media_type="text/markdown",
            size_bytes=len(text),
        ),
        chunks=chunks,
        text=text,
        purpose_id="legal-review",
        purpose_version=1,
        redactions={"email": 12, "phone": 3},
        output_kind="summary",
        output_media_type="text/markdown",
        output=b"Alice met Bob.",
        issued_at=datetime.now(UTC),
    )
    started = time.perf_counter()
    envelope = proofs.sign_envelope(manifest, key, "bench")
    sign_s = time.perf_counter() - started
    payload = base64.b64decode(envelope["payload"])
    message = proofs.pae(proofs.PAYLOAD_TYPE, payload)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    parsed = json.loads(payload)
    # Both paths must succeed before anything is timed.
    assert proofs.verify_envelope(envelope, keys_by_id, text=text).text_checked

    variants: dict[str, Callable[[], Any]] = {
        "verify": lambda: proofs.verify_envelope(envelope, keys_by_id),
        "verify_with_text": lambda: proofs.verify_envelope(envelope, keys_by_id, text=text),
        "baseline": lambda: key.public_key().verify(signature, message),
        "canonicalise": lambda: rfc8785.dumps(parsed),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            for _ in range(REPEATS_PER_ROUND):
                began = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - began)

    verify_ms, baseline_ms = median_ms(samples["verify"]), median_ms(samples["baseline"])
    canonicalise_ms = median_ms(samples["canonicalise"])
    result = {
        "bench": "rag_manifest",
        "chunks": len(chunks),
        "text_bytes": len(text),
        "payload_bytes": len(payload),
        "verify_ms": verify_ms,
        "verify_with_text_ms": median_ms(samples["verify_with_text"]),
        "baseline_ms": baseline_ms,
        "ratio": round(verify_ms / baseline_ms, 1),
        "canonicalise_ms": canonicalise_ms,
        "canonical_share": round(canonicalise_ms / verify_ms, 2),
        "sign_ms": round(sign_s * 1000, 1),
        "rounds": rounds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
