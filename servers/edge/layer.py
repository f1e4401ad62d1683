"""The edge layer of one server process: the cache, the mutation graph and what feeds them.

* `EdgeLayer` owns the cache, the mutation graph (built from every contract
  at start), the per-tenant caps (kept in the store, applied on every replica
  within `CAP_REFRESH_S`), the leak detector (the `intelgraph.edge` Rego rules,
  memoized) and the alarm sink (alarms land in the store in the background,
  each pushed to the platform's webhooks in the same transaction; the hit path
  never waits on them).
* `InvalidationInterceptor` invalidates, after every successful mutating RPC
  (through the facade or straight over gRPC), the tags the graph gives it, for
  the caller's tenant and for a tenant the request names (`tenant_id`); a
  request with an empty `tenant_id` changes a platform-wide resource (a
  default price) and invalidates the tags for every tenant.
* `plan` says how a persisted read is cached, from the RPCs it calls: not at
  all (`no_store` reads, operators' reads of a named tenant), or with which
  TTL, grace, tags, and whether per caller. `answer` serves it through the
  cache: the platform's `core.interfaces.ReadCache`, which the GraphQL facade uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache
from google.protobuf.descriptor import MethodDescriptor

from core.descriptors import cache_policy, method_path
from core.interfaces import CachedAnswer, CallerScope, Notifications, Origin
from interceptors.auth import current_principal
from interceptors.base import Context, Method, RpcMethod, ServerInterceptor, proceed
from interceptors.policy import PolicyEngine
from servers.db import Database
from servers.edge import metrics, store
from servers.edge.alarms import record_leak_alarm
from servers.edge.cache import (
    EVERY_TENANT,
    CacheKey,
    EdgeCache,
    Freshness,
    LeakDetector,
    LeakVerdict,
    canonical_variables,
    scope_hash,
)
from servers.edge.counters import POLL_S as COUNTERS_POLL_S
from servers.edge.counters import StoreCounters
from servers.edge.graph import MutationGraph, build_mutation_graph
from servers.edge.shared import POLL_S, RedisTier
from servers.jobs import every
from servers.runtime import Component, Foundation, Job, Runtime
from servers.switches import EDGE_COALESCING, SwitchBoard

logger = logging.getLogger(__name__)

#: The policy entrypoint that judges a cache hit (interceptors/policies/edge.rego).
LEAK_VERDICT = "intelgraph/edge/leak_verdict"

#: Seconds within which a cap set on one replica applies on the others.
CAP_REFRESH_S = 2.0


def rego_detector(engine: PolicyEngine, *, memo_size: int = 4096) -> LeakDetector:
    """The leak detector: the `intelgraph.edge` rules, memoized on their whole input."""
    memo: LRUCache[tuple[tuple[str, str], tuple[str, str]], LeakVerdict] = LRUCache(memo_size)

    def detect(entry: tuple[str, str], request: tuple[str, str]) -> LeakVerdict:
        verdict = memo.get((entry, request))
        if verdict is None:
            result = engine.evaluate(
                LEAK_VERDICT,
                {
                    "cache_key": {"tenant": entry[0], "scope_hash": entry[1]},
                    "request": {"tenant": request[0], "scope_hash": request[1]},
                },
            )
            if not isinstance(result, dict):  # undefined: refuse rather than serve
                verdict = LeakVerdict(True, ("policy undefined",))
            else:
                verdict = LeakVerdict(
                    bool(result.get("suspicious")), tuple(sorted(result.get("reasons") or ()))
                )
            memo[entry, request] = verdict
        return verdict

    return detect


@dataclass(frozen=True)
class CachePlan:
    """How one persisted operation is cached."""

    freshness: Freshness
    #: Each caller (subject) has entries of its own.
    per_caller: bool
    #: Each token has entries of its own (the result shows the token's id or expiry).
    per_token: bool


@dataclass(frozen=True)
class EdgeDefaults:
    """TTL and grace of reads that declare none, and the default cap."""

    ttl_s: float = 30.0
    grace_s: float = 10.0
    cap_bytes: int = 512 * 1024 * 1024


class EdgeLayer(Component):
    """The cache and everything around it, in one server process.

    The platform's `core.interfaces.ReadCache` and `CacheInvalidation`; it adds
    `InvalidationInterceptor` to the chain.
    """

    @classmethod
    def of(cls, foundation: Foundation) -> EdgeLayer | None:
        """The edge layer, when on: the mutation graph covers every contract, served or not."""
        settings = foundation.settings
        if not settings.edge_cache:
            return None
        services = foundation.services
        graph = build_mutation_graph(
            (service.descriptor for service in services),
            (path for service in services for path in service.built_paths()),
        )
        return cls(
            foundation.database,
            foundation.engine,
            graph,
            defaults=EdgeDefaults(settings.edge_ttl, settings.edge_stale, settings.edge_cap_bytes),
            coalescing=_coalescing(settings.edge_coalescing, foundation.switches),
            redis_url=settings.redis_url,
            redis_prefix=settings.edge_redis_prefix,
            share_counters=(
                settings.edge_shared_counters
                if settings.edge_shared_counters is not None
                else settings.workers > 1 or not settings.database_url.startswith("sqlite")
            ),
        )

    def __init__(
        self,
        database: Database,
        engine: PolicyEngine,
        graph: MutationGraph,
        *,
        defaults: EdgeDefaults = EdgeDefaults(),
        coalescing: bool | Callable[[], bool] = True,
        redis_url: str = "",
        redis_prefix: str = "intelgraph:edge:",
        share_counters: bool = False,
    ) -> None:
        self.database = database
        self.graph = graph
        self.defaults = defaults
        self.cache = EdgeCache(
            rego_detector(engine),
            self._record_alarm,
            default_cap=defaults.cap_bytes,
            coalescing=coalescing,
        )
        self.shared = (
            RedisTier(redis_url, self.cache.generations, prefix=redis_prefix) if redis_url else None
        )
        self.cache.shared = self.shared
        #: Without Redis, invalidations reach the store's other processes through it.
        self.counters = (
            StoreCounters(database, self.cache.generations)
            if share_counters and self.shared is None
            else None
        )
        self.cache.counters = self.counters
        self._plans: dict[tuple[str, tuple[str, ...]], CachePlan | None] = {}
        self._writes: set[asyncio.Task[None]] = set()
        #: Where alarms are pushed (given when the runtime is composed).
        self._notifications: Notifications | None = None
        covered, mutating = graph.coverage()
        metrics.COVERAGE.set(covered / mutating if mutating else 1.0)

    # -- plans -----------------------------------------------------------------------------------

    def plan(self, operation: str, reads: Sequence[MethodDescriptor]) -> CachePlan | None:
        """How the answers of `operation`, which calls the RPCs `reads`, are cached (None: not)."""
        key = (operation, tuple(method_path(method) for method in reads))
        if key not in self._plans:
            self._plans[key] = self._make_plan(reads)
        return self._plans[key]

    def _make_plan(self, reads: Sequence[MethodDescriptor]) -> CachePlan | None:
        if not reads:
            return None
        if any("tenant_id" in method.input_type.fields_by_name for method in reads):
            return None  # operators' reads of a named tenant are not cached
        policies = [cache_policy(method) for method in reads]
        if any(policy.no_store for policy in policies):
            return None
        ttl = min(policy.ttl_seconds or self.defaults.ttl_s for policy in policies)
        grace = min(policy.stale_seconds or self.defaults.grace_s for policy in policies)
        tags = frozenset().union(
            *(self.graph.reads.get(method_path(method), frozenset()) for method in reads)
        )
        per_token = any(policy.per_token for policy in policies)
        return CachePlan(
            Freshness(float(ttl), float(grace), tags),
            per_token or any(policy.per_caller for policy in policies),
            per_token,
        )

    async def answer(
        self,
        caller: CallerScope,
        operation: str,
        reads: Sequence[MethodDescriptor],
        variables: Mapping[str, Any],
        origin: Origin,
    ) -> CachedAnswer | None:
        """`operation`'s answer for `caller`, through the cache (None: it is not cached)."""
        plan = self.plan(operation, reads)
        if plan is None:
            return None
        key = CacheKey(
            caller.tenant,
            scope_hash(
                caller.scopes,
                jit=caller.jit,
                subject=caller.subject if plan.per_caller else None,
                token=caller.token_id if plan.per_token else None,
            ),
            operation,
            canonical_variables(variables),
        )
        outcome = await self.cache.fetch(key, plan.freshness, origin)
        return CachedAnswer(outcome.body, outcome.kind)

    async def changed(self, tenant: uuid.UUID, resource_types: Sequence[str]) -> None:
        """Drop the tenant's cached reads that touch `resource_types` (work outside an RPC)."""
        await self.cache.invalidate(str(tenant), resource_types)

    def attach(self, runtime: Runtime) -> None:
        """Push leak alarms through the platform's notifications."""
        self._notifications = runtime.notifications

    def interceptors(self) -> Sequence[ServerInterceptor]:
        """Invalidation after every successful mutating RPC."""
        return (InvalidationInterceptor(self.graph, self.cache),)

    # -- caps ------------------------------------------------------------------------------------

    async def load_caps(self) -> None:
        """Apply the caps the store holds (and defaults where a cap was removed)."""
        async with self.database.platform_session(readonly=True) as session:
            held = await store.caps(session)
        for tenant in set(self.cache.tenants()) | set(held):
            self.cache.set_cap(tenant, held.get(tenant))

    async def set_cap(self, tenant: uuid.UUID, cap_bytes: int) -> None:
        """Store a tenant's cap (0 restores the default) and apply it here at once."""
        async with self.database.platform_session() as session:
            await store.set_cap(session, tenant, cap_bytes, _now())
        self.cache.set_cap(str(tenant), cap_bytes or None)

    async def start(self) -> None:
        """Before serving: the caps, and the cluster's generations (with a shared tier)."""
        await self.load_caps()
        if self.counters is not None:
            await self.counters.poll()
        if self.shared is not None:
            try:
                await self.shared.poll()
            except Exception:  # noqa: BLE001 - Redis down: start anyway, TTL fences hold
                logger.warning("edge cache: could not read generations from Redis at start")

    def background_jobs(self) -> list[Job]:
        """Caps refreshed from the store; generations followed on Redis (announced and polled)."""
        jobs: list[Job] = [lambda: every(CAP_REFRESH_S, self.load_caps, "edge.caps")]
        shared = self.shared
        if shared is not None:
            jobs += [shared.listen, lambda: every(POLL_S, shared.poll, "edge.generations")]
        counters = self.counters
        if counters is not None:
            jobs.append(lambda: every(COUNTERS_POLL_S, counters.poll, "edge.generations"))
        return jobs

    async def close(self) -> None:
        """Finish alarm writes; close the shared tier."""
        await self.settled()
        if self.shared is not None:
            await self.shared.close()

    # -- alarms ----------------------------------------------------------------------------------

    def _record_alarm(self, tenant: str, operation: str, reason: str, digest: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._write_alarm(uuid.UUID(tenant), operation, reason, digest)
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_alarm(
        self, tenant: uuid.UUID, operation: str, reason: str, digest: str
    ) -> None:
        try:
            await record_leak_alarm(
                self.database, self._notifications, tenant, operation, reason, digest, _now()
            )
        except Exception:
            logger.exception("could not record a leak alarm (it is counted and logged)")

    async def settled(self) -> None:
        """Wait for alarms being written (tests, shutdown)."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


def _now() -> datetime:
    return datetime.now(UTC)


class InvalidationInterceptor(ServerInterceptor):
    """After a successful mutating RPC, invalidate what the mutation graph says it touched."""

    def __init__(self, graph: MutationGraph, cache: EdgeCache) -> None:
        self._graph = graph
        self._cache = cache

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: Context,
        rpc: RpcMethod,
    ) -> Any:
        """Run the call; once it has succeeded, invalidate what it touched."""
        tags = self._graph.tags_of(rpc.full_name)
        if not tags:
            return await proceed(method, request_or_iterator, context, rpc)
        tenants = _tenants_of(request_or_iterator, rpc)
        if rpc.response_streaming:
            return self._after_stream(method(request_or_iterator, context), tenants, tags)
        response = await method(request_or_iterator, context)
        await self._invalidate(tenants, tags)
        return response

    async def _after_stream(
        self, responses: AsyncIterator[Any], tenants: list[str], tags: frozenset[str]
    ) -> AsyncIterator[Any]:
        async for response in responses:
            yield response
        await self._invalidate(tenants, tags)

    async def _invalidate(self, tenants: Iterable[str], tags: frozenset[str]) -> None:
        for tenant in tenants:
            try:
                await self._cache.invalidate(tenant, tags)
            except Exception:  # the mutation happened; TTL fences bound what this loses
                logger.exception("could not invalidate edge cache tags %s", sorted(tags))


def _tenants_of(request: Any, rpc: RpcMethod) -> list[str]:
    """Whose cached reads a mutation touches: the caller's, and a tenant the request names."""
    tenants: list[str] = []
    try:
        tenants.append(current_principal().tenant_id)
    except Exception:  # noqa: BLE001 - no caller (a public RPC): nothing of a tenant to touch
        logger.debug("no principal for %s", rpc.full_name)
    if rpc.request_streaming or not hasattr(request, "DESCRIPTOR"):
        return tenants
    if "tenant_id" in request.DESCRIPTOR.fields_by_name:
        named = request.tenant_id
        if not named:
            return [EVERY_TENANT]
        with contextlib.suppress(ValueError):  # the RPC itself refuses a malformed one
            tenants.append(str(uuid.UUID(named)))
    return list(dict.fromkeys(tenants))


def _coalescing(configured: bool, switches: SwitchBoard | None) -> bool | Callable[[], bool]:
    """Coalescing as configured, unless the backout switch `edge.coalescing` is off."""
    if not configured or switches is None:
        return configured
    return lambda: switches.is_on(EDGE_COALESCING)
