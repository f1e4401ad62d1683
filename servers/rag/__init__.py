"""Resumable ingest, chunk lineage, extractive summaries, purpose templates, proof manifests."""
