"""Persisted graph analytics packs with cost hints, sampling and deadlines."""

from servers.analytics.service import SERVICE, AnalyticsService

__all__ = ["SERVICE", "AnalyticsService"]
