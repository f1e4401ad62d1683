"""Persisted graph analytics packs with cost hints, sampling and deadlines.

Public surface: the service definition, and the demo graph seeder (`conductor demo seed`).
"""

from servers.analytics.demo import seed_tenant
from servers.analytics.service import SERVICE

__all__ = ["SERVICE", "seed_tenant"]
