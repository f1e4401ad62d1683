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
import functools
import hashlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from intelgraph.sdk import INSECURE, AsyncClient, ConductorError, bearer_token

T = TypeVar("T")
#: The persisted GraphQL operations, as committed beside the schema (what client apps send).
OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "graphql" / "operations"


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


@dataclass(frozen=True)
class Criterion:
    """One of a pack's criteria: its name and its threshold, as the results table shows them."""

    name: str
    threshold: str


@dataclass(frozen=True)
class Operation:
    """A persisted GraphQL operation: its id (the hex SHA-256 of its file) and its document."""

    id: str
    document: str


@functools.cache
def persisted_operations(directory: Path = OPERATIONS_DIR) -> dict[str, Operation]:
    """Every persisted operation, by name (its file's stem).

    >>> operations = persisted_operations()
    >>> "PriceBook" in operations and len(operations["PriceBook"].id) == 64
    True
    """
    found = {}
    for path in sorted(directory.glob("*.graphql")):
        document = path.read_text()
        found[path.stem] = Operation(hashlib.sha256(document.encode()).hexdigest(), document)
    return found


async def refusal(call: Awaitable[object]) -> ConductorError | None:
    """The error `call` was refused with, or None when it succeeded."""
    try:
        await call
    except ConductorError as error:
        return error
    return None


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

    async def guarded(self, criterion: Criterion, check: Awaitable[T]) -> T | None:
        """Run one criterion's check; an error in it fails that criterion alone, not the lane.

        An API refusal is said as the API said it; any other error by its type and message.
        """
        try:
            return await check
        except ConductorError as error:
            why = f"the API refused a call: {error.code.name} {error.reason.name}: {error.details}"
        except Exception as error:  # noqa: BLE001 - one criterion's fault fails that criterion
            why = f"{type(error).__name__}: {error}"
        self.unchecked(criterion, why)
        return None

    def unchecked(self, criterion: Criterion, why: str) -> Check:
        """Record `criterion` as failed because it could not be checked, and why."""
        return self.check(
            criterion.name,
            threshold=criterion.threshold,
            measured="not checked",
            passed=False,
            detail=why[:500],
        )

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
