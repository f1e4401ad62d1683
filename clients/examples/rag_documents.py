"""Uploads a note (resumably), reads its summary for a purpose, and checks its signed manifest.

Scopes: `rag.write` (upload), `rag.read` (chunks, summary, manifest).
"""

from intelgraph.sdk import Client, upload_document

NOTE = b"""# Vendor review

The vendor stores backups in two regions and tests restores every quarter.
Questions go to Jane Doe at jane.doe@example.com or +1 415 555 0132.
The contract renews in March unless either side gives notice.
"""


def main() -> None:
    """Run the example; exits 0 when it worked."""
    with Client.from_env() as client:
        uploaded = upload_document(client.rag, NOTE, filename="vendor-review.md")
        document = uploaded.document
        print(f"document {document.id}: {document.chunk_count} chunks, sha256 {document.sha256}")
        summary = client.rag.summarize(document_id=document.id, purpose="support").summary
        for sentence in summary.sentences:
            print(f"- {sentence.text}  (#{sentence.anchor}, bytes {sentence.byte_start}-"
                  f"{sentence.byte_end})")  # fmt: skip
        manifest = client.rag.get_manifest(document_id=document.id, purpose="support").manifest
        verdict = client.rag.verify_manifest(envelope=manifest.envelope, check_document=True)
        print(f"manifest root {manifest.merkle_root}: valid={verdict.valid}")
        if not verdict.valid:
            raise SystemExit(f"manifest did not verify: {verdict.problem}")


if __name__ == "__main__":
    main()
