"""What an acceptance check is, and what a lane's checks are given to run with.

A lane (`servers.acceptance.billing`, `edge`, …) is a module with `LANE`, its
name, and `async def run(context: Context) -> None`, which calls the deployment
as a client would (the SDK over gRPC, GraphQL over HTTP), records one `Check`
per acceptance criterion with `context.check(...)` (the measured figure beside
its threshold) and writes what it saw with `context.raw(...)`. A lane never
reaches into a service's modules or the store: it proves what a user would get.
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token


@dataclass(frozen=True)
class Check:
    """One acceptance criterion, checked.

    Attributes:
        lane: The lane it belongs to ("billing", "edge", …).
        name: The criterion, as the acceptance pack states it.
        threshold: What must hold, for people ("≤ $0.01/day", "≥ 95%").
        measured: The figure measured, for people ("$0.00", "100.0%").
        passed: Whether it held.
        value: The figure as a number where there is one (plots, comparisons).
        detail: What was done or what failed, one or two sentences.
    """

    lane: str
    name: str
    threshold: str
    measured: str
    passed: bool
    value: float | None = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        """The check as JSON data."""
        return asdict(self)


class TokenMinter(Protocol):
    """Mints bearer tokens the deployment accepts (its signing keys)."""

    def __call__(
        self, tenant: uuid.UUID, scopes: Sequence[str], *, subject: str, ttl_s: float
    ) -> str:
        """A token for `tenant` with `scopes`."""
        ...


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of `values` (`share` in 0..1); 0 for none.

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.95)
    5.0
    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5)
    3.0
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Context:
    """One lane's run against one deployment.

    Attributes:
        lane: The lane's name.
        grpc_target: The deployment's gRPC address (host:port).
        http_url: Its HTTP base URL (GraphQL at `/graphql`), no trailing slash.
        minter: Mints tokens for any tenant the lane makes up.
        raw_dir: Where the lane's raw results go (one JSON file per `raw` call).
        quick: Smaller samples (CI); the thresholds are the same.
        demo_tenant: The tenant `conductor demo seed` filled, if the lane may use it.
        checks: The checks recorded so far.
        owned: The deployment was started for this run (or is a test's): a lane may
            change platform-wide settings on it, such as a backout switch, to measure a
            baseline, and must put them back. Never on a deployment given by address.
        showcase: Console page → the tenant whose data it should show (the evidence
            bundle's screenshots): a lane names the tenant it filled, e.g.
            `context.showcase["documents"] = tenant`. Shared by the lanes of a run.
    """

    lane: str
    grpc_target: str
    http_url: str
    minter: TokenMinter
    raw_dir: Path
    quick: bool = False
    demo_tenant: uuid.UUID | None = None
    owned: bool = False
    checks: list[Check] = field(default_factory=list)
    showcase: dict[str, uuid.UUID] = field(default_factory=dict)

    def tenant(self) -> uuid.UUID:
        """A new tenant for this run (nothing of it exists yet)."""
        return uuid.uuid4()

    def token(
        self,
        tenant: uuid.UUID,
        scopes: Sequence[str],
        *,
        subject: str = "acceptance",
        ttl_s: float = 900,
    ) -> str:
        """A bearer token for `tenant` with `scopes`."""
        return self.minter(tenant, scopes, subject=subject, ttl_s=ttl_s)

    @contextlib.asynccontextmanager
    async def client(
        self,
        tenant: uuid.UUID,
        scopes: Sequence[str],
        *,
        subject: str = "acceptance",
        ttl_s: float = 900,
    ) -> AsyncIterator[AsyncClient]:
        """An SDK client calling as `subject` of `tenant` with `scopes` (closed afterwards)."""
        token = self.token(tenant, scopes, subject=subject, ttl_s=ttl_s)
        async with AsyncClient(self.grpc_target, INSECURE, token=bearer_token(token)) as client:
            yield client

    async def graphql(
        self,
        token: str,
        query: str | None = None,
        variables: dict[str, Any] | None = None,
        *,
        operation_id: str | None = None,
    ) -> tuple[int, dict[str, Any], httpx.Headers]:
        """POST one GraphQL operation (a document, or a persisted operation's id).

        Returns:
            The HTTP status, the decoded body and the response headers.
        """
        payload: dict[str, Any] = {"variables": variables or {}}
        if operation_id is not None:
            payload["id"] = operation_id
        if query is not None:
            payload["query"] = query
        async with httpx.AsyncClient(base_url=self.http_url, timeout=30.0) as http:
            response = await http.post(
                "/graphql", json=payload, headers={"authorization": f"Bearer {token}"}
            )
        return response.status_code, response.json(), response.headers

    def raw(self, name: str, data: Any) -> Path:
        """Write `data` as the lane's raw result `name` (JSON, keys sorted); its path."""
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        path = self.raw_dir / f"{name}.json"
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        return path

    def check(
        self,
        name: str,
        *,
        threshold: str,
        measured: str,
        passed: bool,
        value: float | None = None,
        detail: str = "",
    ) -> Check:
        """Record one criterion's outcome."""
        checked = Check(self.lane, name, threshold, measured, passed, value, detail)
        self.checks.append(checked)
        return checked
