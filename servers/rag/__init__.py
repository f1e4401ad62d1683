"""Resumable ingest, chunk lineage, extractive summaries, purpose templates, proof manifests."""

from servers.rag.service import SERVICE

__all__ = ["SERVICE"]
