"""Resumable ingest, chunk lineage, extractive summaries, purpose templates, proof manifests."""

from servers.rag.service import SERVICE, RagService

__all__ = ["SERVICE", "RagService"]
