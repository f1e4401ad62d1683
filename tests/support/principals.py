"""Verified callers for tests that call use cases directly, without a token on the wire."""

from __future__ import annotations

import uuid

from interceptors.policy import CallerFacts
from interceptors.tokens import Principal


def principal(tenant: uuid.UUID, subject: str, scopes: list[str]) -> Principal:
    """A caller of `tenant` as the authentication interceptor would have verified it."""
    return Principal(
        subject=subject,
        tenant=tenant,
        tenant_id=str(tenant),
        scopes=tuple(scopes),
        jit=False,
        token_id=uuid.uuid4().hex,
        expires_at=9e9,
        facts=CallerFacts(subject, str(tenant), tuple(scopes), jit=False),
    )
