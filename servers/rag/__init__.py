"""Resumable ingest, chunk lineage, extractive summaries, purpose templates, proof manifests.

Public surface: the service definition, and what verifies proof manifests
offline (`conductor rag verify|jwks`).
"""

from servers.rag.manifests import ManifestSigner, envelope_of, published_keys
from servers.rag.proofs import ManifestInvalid, ed25519_keys, verify_envelope
from servers.rag.service import SERVICE

__all__ = [
    "SERVICE",
    "ManifestInvalid",
    "ManifestSigner",
    "ed25519_keys",
    "envelope_of",
    "published_keys",
    "verify_envelope",
]
