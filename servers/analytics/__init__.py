"""Persisted graph analytics packs with cost hints, sampling and deadlines."""
