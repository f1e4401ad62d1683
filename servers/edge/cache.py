"""The edge cache: results of persisted GraphQL reads, per tenant, never stale for long.

* Entries are keyed by tenant, a hash of the caller's authorization scope, the
  operation and its canonical variables, and carry their tenant and scope
  hash; every hit is checked against the request by the leak detector (the
  `intelgraph.edge` Rego rules) before it is served. A suspicious hit is
  refused, dropped, counted and raised as an alarm.
* Each tenant has its own byte-capped LRU (cachetools, sized on the
  serialised body): a noisy tenant evicts only its own entries.
* Invalidation is by generation counters, never key scans: one platform-wide,
  one per tenant, one per (tenant, tag) and per ("*", tag) for platform-wide
  resources. An entry remembers the generations it was filled under (taken
  before its origin call, so a mutation racing the fill invalidates it); a hit
  whose generations moved is a miss.
* Freshness: fresh until its TTL; then, for a bounded grace, served stale
  while one background call refreshes it; never served past TTL + grace.
* Coalescing: concurrent identical misses share one origin call (a task the
  callers await through `asyncio.shield`, so a cancelled first caller does
  not cancel it); an origin error reaches every waiter and is not cached.
* A shared tier (Redis, `servers/edge/shared.py`) is optional: replicas then
  share entries, generations and at most one origin call per key.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cachetools import LRUCache

from servers.edge import metrics

logger = logging.getLogger(__name__)

#: Tenant slot of generations that apply to every tenant (platform-wide resources).
EVERY_TENANT = "*"
#: The seed's default per-tenant cap.
DEFAULT_CAP_BYTES = 512 * 1024 * 1024
#: What an entry costs beyond its body (key, tags, bookkeeping), counted against the cap.
ENTRY_OVERHEAD = 256


@dataclass(frozen=True)
class CacheKey:
    """What identifies a cached result.

    Attributes:
        tenant: The caller's tenant (canonical UUID text).
        scope_hash: Hash of the caller's authorization scope (and subject for per-caller reads).
        operation: The persisted operation's id (and the operation's name in it).
        variables: The variables, canonical JSON.
    """

    tenant: str
    scope_hash: str
    operation: str
    variables: str

    @functools.cached_property
    def digest(self) -> str:
        """The key's hash: the entry's name in every tier, and what alarms show."""
        text = "\x1f".join((self.tenant, self.scope_hash, self.operation, self.variables))
        return hashlib.sha256(text.encode()).hexdigest()


def scope_hash(
    scopes: Iterable[str], *, jit: bool, subject: str | None = None, token: str | None = None
) -> str:
    """The hash of what authorization sees of a caller, and who or which token it is, if asked.

    Reads whose results depend on the caller pass `subject`; on the token, `token` too.
    """
    return _scope_hash(tuple(sorted(set(scopes))), jit, subject, token)


@functools.lru_cache(maxsize=4096)
def _scope_hash(scopes: tuple[str, ...], jit: bool, subject: str | None, token: str | None) -> str:
    text = json.dumps([scopes, jit, subject, token], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def canonical_variables(variables: Mapping[str, Any]) -> str:
    """Variables as canonical JSON (sorted keys, no whitespace)."""
    return json.dumps(variables, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Freshness:
    """How long an operation's results are served."""

    ttl_s: float
    grace_s: float
    tags: frozenset[str]


@dataclass
class Entry:
    """One cached result and what it was filled under."""

    tenant: str
    scope_hash: str
    operation: str
    body: bytes
    tags: frozenset[str]
    stamp: tuple[int, ...]
    stored_at: float
    ttl_s: float
    grace_s: float

    @property
    def size(self) -> int:
        """Bytes counted against the tenant's cap."""
        return len(self.body) + ENTRY_OVERHEAD

    def age(self, now: float) -> float:
        """Seconds since it was filled."""
        return now - self.stored_at


class Generations:
    """Invalidation counters; an entry is valid while its stamp equals the current one."""

    def __init__(self) -> None:
        self.platform = 0
        self.tenants: dict[str, int] = {}
        self.tags: dict[tuple[str, str], int] = {}

    def stamp(self, tenant: str, tags: Iterable[str]) -> tuple[int, ...]:
        """The counters an entry of `tenant` with `tags` depends on, in a fixed order."""
        return (
            self.platform,
            self.tenants.get(tenant, 0),
            *(
                self.tags.get((tenant, tag), 0) + self.tags.get((EVERY_TENANT, tag), 0)
                for tag in sorted(tags)
            ),
        )

    def observe(self, name: str, value: int) -> None:
        """Take a counter's value from elsewhere (the shared tier); counters never go back."""
        kind, _, rest = name.partition(":")
        if kind == "p":
            self.platform = max(self.platform, value)
        elif kind == "t":
            self.tenants[rest] = max(self.tenants.get(rest, 0), value)
        elif kind == "x":
            tenant, _, tag = rest.partition(":")
            self.tags[tenant, tag] = max(self.tags.get((tenant, tag), 0), value)

    def bump(self, name: str) -> int:
        """Advance one counter locally; its new value."""
        current = self.value(name) + 1
        self.observe(name, current)
        return current

    def value(self, name: str) -> int:
        """A counter's current value by name ("p", "t:<tenant>", "x:<tenant>:<tag>")."""
        kind, _, rest = name.partition(":")
        if kind == "p":
            return self.platform
        if kind == "t":
            return self.tenants.get(rest, 0)
        tenant, _, tag = rest.partition(":")
        return self.tags.get((tenant, tag), 0)


def tag_counter(tenant: str, tag: str) -> str:
    """The counter name of a (tenant, tag) pair."""
    return f"x:{tenant}:{tag}"


def tenant_counter(tenant: str) -> str:
    """The counter name of a whole tenant."""
    return f"t:{tenant}"


PLATFORM_COUNTER = "p"


@dataclass
class TenantStats:
    """One tenant's counters in this process."""

    hits: int = 0
    misses: int = 0
    coalesced_waits: int = 0
    evictions: int = 0
    purges: int = 0
    leak_alarms: int = 0
    origin_calls: int = 0


class _TenantLru(LRUCache[str, Entry]):
    """A byte-capped LRU that counts what it evicts."""

    def __init__(self, cap: int, stats: TenantStats) -> None:
        super().__init__(maxsize=cap, getsizeof=lambda entry: entry.size)
        self.stats = stats

    def popitem(self) -> tuple[str, Entry]:
        key, entry = super().popitem()
        self.stats.evictions += 1
        metrics.EVICTIONS.inc()
        return key, entry


@dataclass
class TenantSpace:
    """One tenant's entries and counters."""

    entries: _TenantLru
    stats: TenantStats = field(default_factory=TenantStats)


@dataclass(frozen=True)
class LeakVerdict:
    """What the leak detector says of serving an entry to a request."""

    suspicious: bool
    reasons: tuple[str, ...]


#: Decides whether an entry may be served: (entry's tenant, scope hash), (request's).
LeakDetector = Callable[[tuple[str, str], tuple[str, str]], LeakVerdict]
#: Records a refused hit (the request's tenant, the operation, reason, key digest).
AlarmSink = Callable[[str, str, str, str], None]


class SharedTier(Protocol):
    """Where replicas share entries, generations and origin calls (Redis)."""

    async def get(self, digest: str) -> Entry | None:
        """The shared entry under `digest`, if any."""

    async def fill(
        self, digest: str, origin: Callable[[], Awaitable[tuple[bytes, Entry | None]]]
    ) -> tuple[bytes, Entry | None, bool]:
        """Run `origin` unless another replica is running it for `digest`; then use theirs.

        Returns (body, entry or None when not cacheable, whether this replica called the origin).
        """

    async def bump(self, names: list[str]) -> dict[str, int]:
        """Advance shared counters and announce them; their new values."""


class SharedCounters(Protocol):
    """Where replicas share invalidation counters only (the store, without Redis)."""

    async def bump(self, names: list[str]) -> dict[str, int]:
        """Advance shared counters; their new values."""


@dataclass(frozen=True)
class Outcome:
    """How a request was answered: hit, stale, miss, coalesced or shared."""

    body: bytes
    kind: str


class EdgeCache:
    """The cache of one server process.

    Args:
        detector: The leak detector (the Rego rules, memoized).
        alarms: Where refused hits are recorded.
        default_cap: Byte cap of a tenant without one of its own.
        clock: Wall-clock seconds (entries in the shared tier are dated with it).
        coalescing: Share one origin call between concurrent identical misses (or a
            callable that says, at each miss, whether to: a backout switch).
    """

    def __init__(
        self,
        detector: LeakDetector,
        alarms: AlarmSink,
        *,
        default_cap: int = DEFAULT_CAP_BYTES,
        clock: Callable[[], float] = time.time,
        coalescing: bool | Callable[[], bool] = True,
        shared: SharedTier | None = None,
        counters: SharedCounters | None = None,
    ) -> None:
        self.generations = Generations()
        #: Where invalidations are shared when there is no shared tier (None: this process only).
        self.counters = counters
        self.default_cap = default_cap
        self._coalescing = coalescing if callable(coalescing) else (lambda: coalescing)
        self.shared = shared
        self._detector = detector
        self._alarms = alarms
        self._clock = clock
        self._caps: dict[str, int] = {}
        self._spaces: dict[str, TenantSpace] = {}
        self._inflight: dict[str, asyncio.Task[tuple[bytes, bool]]] = {}
        self._refreshing: set[asyncio.Task[Any]] = set()
        #: Fault injection for the "purge hook lost" drill: drop this many invalidations.
        self.drop_invalidations = 0

    # -- tenants ---------------------------------------------------------------------------------

    @property
    def coalescing(self) -> bool:
        """Whether concurrent identical misses share one origin call now."""
        return self._coalescing()

    def space(self, tenant: str) -> TenantSpace:
        """The tenant's entries and counters (created empty)."""
        space = self._spaces.get(tenant)
        if space is None:
            stats = TenantStats()
            space = TenantSpace(_TenantLru(self.cap_of(tenant), stats), stats)
            self._spaces[tenant] = space
        return space

    def cap_of(self, tenant: str) -> int:
        """The tenant's byte cap."""
        return self._caps.get(tenant, self.default_cap)

    def set_cap(self, tenant: str, cap: int | None) -> None:
        """Set (or with None restore the default of) a tenant's cap; evicts down to it at once."""
        if cap is None:
            self._caps.pop(tenant, None)
        else:
            self._caps[tenant] = cap
        space = self._spaces.get(tenant)
        if space is None or space.entries.maxsize == self.cap_of(tenant):
            return
        resized = _TenantLru(self.cap_of(tenant), space.stats)
        survivors = list(space.entries.items())  # least recently used first
        space.entries = resized
        for digest, entry in survivors:
            if entry.size <= resized.maxsize:
                resized[digest] = entry
            else:
                space.stats.evictions += 1
        metrics.BYTES.set(self.total_bytes())

    def total_bytes(self) -> int:
        """Bytes held over every tenant."""
        return sum(int(space.entries.currsize) for space in self._spaces.values())

    def tenants(self) -> list[str]:
        """Tenants with entries or counters here."""
        return list(self._spaces)

    # -- reads -----------------------------------------------------------------------------------

    async def fetch(
        self,
        key: CacheKey,
        freshness: Freshness,
        origin: Callable[[], Awaitable[tuple[bytes, bool]]],
    ) -> Outcome:
        """The result for `key`: from the cache when valid, else from `origin` (coalesced).

        `origin` returns (body, cacheable); an uncacheable body (errors in it) is
        handed to every waiter and not stored.
        """
        space = self.space(key.tenant)
        digest = key.digest
        entry = space.entries.get(digest)
        if entry is not None and self._servable(entry, key, digest, space):
            age = entry.age(self._clock())
            if age < entry.ttl_s:
                return self._hit(space, entry, "hit")
            if age < entry.ttl_s + entry.grace_s:
                self._refresh(key, freshness, origin)
                return self._hit(space, entry, "stale")
            del space.entries[digest]
        coalescing = self._coalescing()
        flight = self._inflight.get(digest) if coalescing else None
        if flight is not None:
            space.stats.coalesced_waits += 1
            space.stats.misses += 1
            metrics.REQUESTS.labels("coalesced").inc()
            body, _ = await asyncio.shield(flight)
            return Outcome(body, "coalesced")
        space.stats.misses += 1
        task = self._start_fill(key, freshness, origin, shared=coalescing)
        body, shared_hit = await asyncio.shield(task)
        kind = "shared" if shared_hit else "miss"
        metrics.REQUESTS.labels(kind).inc()
        return Outcome(body, kind)

    def _hit(self, space: TenantSpace, entry: Entry, kind: str) -> Outcome:
        space.stats.hits += 1
        metrics.REQUESTS.labels(kind).inc()
        return Outcome(entry.body, kind)

    def _servable(self, entry: Entry, key: CacheKey, digest: str, space: TenantSpace) -> bool:
        """An entry that fails `_valid` is dropped."""
        if self._valid(entry, key):
            return True
        space.entries.pop(digest, None)
        return False

    def _valid(self, entry: Entry, key: CacheKey) -> bool:
        """The leak detector passes it (else an alarm is raised) and its generations hold."""
        verdict = self._detector((entry.tenant, entry.scope_hash), (key.tenant, key.scope_hash))
        if verdict.suspicious:
            self._alarm(key, key.digest, verdict)
            return False
        return entry.stamp == self.generations.stamp(entry.tenant, entry.tags)

    def _alarm(self, key: CacheKey, digest: str, verdict: LeakVerdict) -> None:
        self.space(key.tenant).stats.leak_alarms += 1
        metrics.LEAK_ALARMS.inc()
        reason = ", ".join(verdict.reasons) or "suspicious"
        logger.error(
            "edge cache refused a suspicious hit (%s) for operation %s, key %s",
            reason,
            key.operation,
            digest,
        )
        self._alarms(key.tenant, key.operation, reason, digest)

    def _start_fill(
        self,
        key: CacheKey,
        freshness: Freshness,
        origin: Callable[[], Awaitable[tuple[bytes, bool]]],
        *,
        shared: bool,
    ) -> asyncio.Task[tuple[bytes, bool]]:
        """The fill's task; `shared`: later misses of the key wait on it."""
        digest = key.digest
        task = asyncio.create_task(self._fill(key, freshness, origin))
        if shared:
            self._inflight[digest] = task
            task.add_done_callback(lambda _: self._inflight.pop(digest, None))
        return task

    async def _fill(
        self,
        key: CacheKey,
        freshness: Freshness,
        origin: Callable[[], Awaitable[tuple[bytes, bool]]],
    ) -> tuple[bytes, bool]:
        """(body, whether it came from another replica through the shared tier)."""
        stamp = self.generations.stamp(key.tenant, freshness.tags)
        space = self.space(key.tenant)

        async def call_origin() -> tuple[bytes, Entry | None]:
            space.stats.origin_calls += 1
            metrics.ORIGIN_CALLS.inc()
            body, cacheable = await origin()
            if not cacheable:
                return body, None
            return body, Entry(
                key.tenant,
                key.scope_hash,
                key.operation,
                body,
                freshness.tags,
                stamp,
                self._clock(),
                freshness.ttl_s,
                freshness.grace_s,
            )

        if self.shared is None:
            body, entry = await call_origin()
            called = True
        else:
            shared = await self.shared.get(key.digest)
            if shared is not None and self._usable_shared(shared, key):
                self._store(key, shared)
                return shared.body, True
            body, entry, called = await self.shared.fill(key.digest, call_origin)
        if entry is not None and (called or self._usable_shared(entry, key)):
            self._store(key, entry)
        return body, not called

    def _usable_shared(self, entry: Entry, key: CacheKey) -> bool:
        """A shared entry is used only if it would be servable here, fresh."""
        return self._valid(entry, key) and entry.age(self._clock()) < entry.ttl_s

    def _store(self, key: CacheKey, entry: Entry) -> None:
        if entry.stamp != self.generations.stamp(entry.tenant, entry.tags):
            return  # invalidated while it was being filled
        space = self.space(key.tenant)
        try:
            space.entries[key.digest] = entry
        except ValueError:  # larger than the tenant's whole cap
            space.stats.evictions += 1
            return
        metrics.BYTES.set(self.total_bytes())

    def _refresh(
        self,
        key: CacheKey,
        freshness: Freshness,
        origin: Callable[[], Awaitable[tuple[bytes, bool]]],
    ) -> None:
        """Refresh a stale entry in the background, once however many hits see it stale."""
        if key.digest in self._inflight:
            return
        task = self._start_fill(key, freshness, origin, shared=True)  # even without coalescing
        self._refreshing.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[Any]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("refreshing a stale edge cache entry failed: %s", task.exception())

    # -- invalidation ----------------------------------------------------------------------------

    async def invalidate(self, tenant: str, tags: Iterable[str]) -> None:
        """A mutation of `tenant` (or EVERY_TENANT) touched `tags`: their entries are stale."""
        names = [tag_counter(tenant, tag) for tag in sorted(set(tags))]
        if not names:
            return
        if self.drop_invalidations > 0:  # the chaos drill: this invalidation is lost
            self.drop_invalidations -= 1
            return
        await self._bump(names)

    async def purge(self, tenant: str, tags: Iterable[str] = ()) -> int:
        """Operator purge of a tenant's entries with `tags`, or all of them; the tenant's count."""
        chosen = sorted(set(tags))
        names = [tag_counter(tenant, tag) for tag in chosen] or [tenant_counter(tenant)]
        self.space(tenant).stats.purges += 1
        metrics.PURGES.inc()
        await self._bump(names)
        return self.space(tenant).stats.purges

    async def purge_everything(self) -> int:
        """Every tenant's entries, on every replica; the platform generation."""
        metrics.PURGES.inc()
        values = await self._bump([PLATFORM_COUNTER])
        for space in self._spaces.values():
            space.entries.clear()
        metrics.BYTES.set(0)
        return values[PLATFORM_COUNTER]

    async def _bump(self, names: list[str]) -> dict[str, int]:
        shared = self.shared or self.counters
        if shared is None:
            return {name: self.generations.bump(name) for name in names}
        values = await shared.bump(names)
        for name, value in values.items():
            self.generations.observe(name, value)
        return values

    # -- for tests and drills ----------------------------------------------------------------------

    def corrupt(self, key: CacheKey, **changes: Any) -> None:
        """Alter a stored entry in place (tests of the leak detector plant bad entries this way)."""
        space = self.space(key.tenant)
        entry = space.entries[key.digest]
        space.entries[key.digest] = replace(entry, **changes)

    async def idle(self) -> None:
        """Wait for background refreshes (tests)."""
        while self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)
