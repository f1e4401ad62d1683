"""What many tests share: the test tenants, tokens for a platform, platforms on free ports.

Fixtures built on these live in `tests/conftest.py`; tests import the helpers from here.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from core.descriptors import permission
from interceptors import keys, tokens
from servers.app import Platform
from servers.config import Settings, load_settings
from servers.registry import all_services
from servers.tracing import Tracing

POSTGRES_URL = os.environ.get("CONDUCTOR_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_SKIP_REASON = (
    "CONDUCTOR_TEST_POSTGRES_URL is not set: PostgreSQL storage tests skipped "
    "(set it, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test, to run them)"
)


def libpq_url(sqlalchemy_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg (libpq) takes it."""
    url = make_url(sqlalchemy_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


#: A tenant for tests, and another one to prove isolation.
TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")
OTHER_TENANT = uuid.UUID("7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910")


def all_permissions() -> list[str]:
    """Every permission some RPC of the contracts declares."""
    declared = {
        permission(method) for service in all_services() for method in service.descriptor.methods
    }
    return sorted(declared - {""})


class Minter:
    """Mints tokens with the keys of a settings' key directory, as `conductor token mint` does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(
        self,
        scopes: list[str] | None = None,
        *,
        tenant: uuid.UUID = TENANT,
        subject: str = "alice",
        ttl_s: float = 600,
        **overrides: object,
    ) -> str:
        ring = keys.load(self.settings.signing_keys_dir)
        options: dict[str, object] = {
            "issuer": self.settings.token_issuer,
            "audience": self.settings.token_audience,
            **overrides,
        }
        return tokens.mint(
            ring,
            subject=subject,
            tenant=tenant,
            scopes=all_permissions() if scopes is None else scopes,
            ttl_s=ttl_s,
            **options,  # type: ignore[arg-type]
        )

    def metadata(self, scopes: list[str] | None = None, **options: Any) -> tuple[tuple[str, str]]:
        """Call metadata carrying a fresh token."""
        return (("authorization", f"Bearer {self(scopes, **options)}"),)


REDIS_URL = os.environ.get("CONDUCTOR_TEST_REDIS_URL", "")
REDIS_SKIP_REASON = (
    "CONDUCTOR_TEST_REDIS_URL is not set: Redis tests skipped "
    "(set it, e.g. redis://127.0.0.1:6379/0, to run them)"
)


@contextlib.asynccontextmanager
async def serving(
    var_dir: Path, *, tracing: Tracing | None = None, **options: object
) -> AsyncIterator[Platform]:
    """A platform on free ports, its schema migrated at start, stopped at once afterwards."""
    platform = Platform(
        load_settings(grpc_port=0, http_port=0, var_dir=var_dir, auto_migrate=True, **options),
        tracing=tracing,
    )
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop(grace=0)
