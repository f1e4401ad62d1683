"""Persisted graph analytics packs: materialized rankings and priced runs, with freshness.

Public surface: the service definition, the demo graph seeder (`conductor demo seed`), and
`prestart`, which `conductor serve` calls first to start the pack workers early.
Both load on first use: the pack workers import this package's algorithms without the
service (gRPC, storage) behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servers.analytics.demo import seed_tenant
    from servers.analytics.service import SERVICE
    from servers.analytics.workers import prestart

__all__ = ["SERVICE", "prestart", "seed_tenant"]


def __getattr__(name: str) -> Any:
    if name == "SERVICE":
        from servers.analytics.service import SERVICE  # noqa: PLC0415 - on first use

        return SERVICE
    if name == "seed_tenant":
        from servers.analytics.demo import seed_tenant  # noqa: PLC0415 - on first use

        return seed_tenant
    if name == "prestart":
        from servers.analytics.workers import prestart  # noqa: PLC0415 - on first use

        return prestart
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
