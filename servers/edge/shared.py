"""The edge cache's shared tier on Redis: entries, generations and origin calls across replicas.

* Entries are stored under `<prefix>e:<key digest>` with their metadata (tenant,
  scope hash, tags, the generations they were filled under, when, TTL, grace)
  and expire at TTL + grace. A replica that misses locally looks there first;
  what it finds is still checked by its own leak detector and generations.
* At most one origin call per key in the cluster: the filling replica holds
  `<prefix>l:<digest>` (SET NX PX); the others wait for its entry, and call
  the origin themselves only if the lock goes without one (an error, an
  uncacheable result) or the wait outlasts the lock.
* Generation counters live in the hash `<prefix>gen`: a bump raises each
  counter past both its stored value and the bumping replica's own (so a Redis
  that restarted empty never hands out a value replicas have already seen),
  then PUBLISHes on `<prefix>gen`; every replica applies announcements at once
  and also reads the whole hash every `POLL_S` seconds, so a lost announcement
  delays a purge by at most that (the emergency purge reaches every replica
  within a second either way); a value polling found whose announcement never
  came is counted (`edge_cache_invalidations_caught_by_poll_total`). Counters
  bumped on one replica while Redis failed are pushed to it once it answers.
* Redis failing never fails a request, nor holds it: commands time out after
  `COMMAND_TIMEOUT_S`, and after a failure Redis is skipped for a second
  (`servers.shared_tier.Breaker`); a read goes to the origin, a bump is applied
  locally (other replicas then rely on TTL fences), and both are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis

from servers.edge.cache import Entry, Generations
from servers.edge.metrics import CAUGHT_BY_POLL
from servers.jobs import Outage
from servers.shared_tier import Breaker, command_client, subscriber_client

logger = logging.getLogger(__name__)

#: Seconds between full reads of the generation hash (the fallback for lost announcements).
POLL_S = 0.5
#: An announcement not heard this long after the poll found its value was lost.
ANNOUNCE_GRACE_S = 1.0
#: How long heard announcements are remembered (for the poll's comparison).
ANNOUNCED_KEPT_S = 30.0
#: Longest an origin call may hold a key's fill lock; waiters give up after it.
LOCK_MS = 10_000
#: Seconds between looks for another replica's entry while it fills.
WAIT_STEP_S = 0.005
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
#: KEYS[1] the hash; ARGV: n names, then the caller's n values. Each counter becomes one
#: more than the larger of its stored value and the caller's; the new values are returned.
_BUMP = """
local n = #ARGV / 2
local values = {}
for i = 1, n do
  local stored = tonumber(redis.call('hget', KEYS[1], ARGV[i]) or '0')
  local value = math.max(stored, tonumber(ARGV[n + i])) + 1
  redis.call('hset', KEYS[1], ARGV[i], value)
  values[i] = value
end
return values
"""


def encode(entry: Entry) -> bytes:
    """An entry as stored in Redis."""
    return json.dumps(
        {
            "tenant": entry.tenant,
            "scope": entry.scope_hash,
            "operation": entry.operation,
            "body": entry.body.decode(),
            "tags": sorted(entry.tags),
            "stamp": list(entry.stamp),
            "at": entry.stored_at,
            "ttl": entry.ttl_s,
            "grace": entry.grace_s,
        },
        separators=(",", ":"),
    ).encode()


def decode(raw: bytes | str) -> Entry:
    """An entry read back from Redis.

    Raises:
        ValueError: Not an entry this code stored.
    """
    try:
        fields: dict[str, Any] = json.loads(raw)
        return Entry(
            str(fields["tenant"]),
            str(fields["scope"]),
            str(fields["operation"]),
            str(fields["body"]).encode(),
            frozenset(fields["tags"]),
            tuple(int(value) for value in fields["stamp"]),
            float(fields["at"]),
            float(fields["ttl"]),
            float(fields["grace"]),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not an edge cache entry: {error}") from None


class RedisTier:
    """The shared tier (implements `servers.edge.cache.SharedTier`).

    Args:
        url: redis://...
        generations: This replica's counters, kept in step with the cluster's.
        prefix: Namespace of every key (replicas of one platform share it).
    """

    def __init__(
        self,
        url: str,
        generations: Generations,
        *,
        prefix: str = "intelgraph:edge:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = command_client(url)
        self._subscriber = subscriber_client(url)
        self._breaker = Breaker()
        #: Values of counters announced (or bumped here) lately, and values the poll found
        #: first, each with when: the bookkeeping of lost announcements.
        self._announced: dict[tuple[str, int], float] = {}
        self._unheard: dict[tuple[str, int], float] = {}
        #: Counters bumped on this replica alone while Redis failed.
        self._unshared: set[str] = set()
        self._generations = generations
        self._prefix = prefix
        self._clock = clock
        self._release = self._redis.register_script(_RELEASE)
        self._bump = self._redis.register_script(_BUMP)
        self._polled = False
        self.generation_key = f"{prefix}gen"

    async def get(self, digest: str) -> Entry | None:
        """The shared entry, if any (None when Redis fails, or failed within the last second)."""
        if self._breaker.open:
            return None
        try:
            raw = await self._redis.get(f"{self._prefix}e:{digest}")
        except redis.RedisError as error:
            self._breaker.trip()
            logger.warning("edge cache: Redis read failed (%s); serving from the origin", error)
            return None
        if raw is None:
            return None
        try:
            return decode(raw)
        except ValueError:
            logger.warning("edge cache: ignoring a malformed shared entry %s", digest)
            return None

    async def fill(
        self, digest: str, origin: Callable[[], Awaitable[tuple[bytes, Entry | None]]]
    ) -> tuple[bytes, Entry | None, bool]:
        """Run `origin` unless another replica is running it for `digest`; then use theirs."""
        lock = f"{self._prefix}l:{digest}"
        token = uuid.uuid4().hex
        if self._breaker.open:
            body, entry = await origin()
            return body, entry, True
        try:
            holding = bool(await self._redis.set(lock, token, nx=True, px=LOCK_MS))
        except redis.RedisError as error:
            self._breaker.trip()
            logger.warning("edge cache: Redis lock failed (%s); calling the origin", error)
            body, entry = await origin()
            return body, entry, True
        if holding:
            try:
                body, entry = await origin()
                if entry is not None:
                    await self._put(digest, entry)
                return body, entry, True
            finally:
                with contextlib.suppress(redis.RedisError):
                    await self._release(keys=[lock], args=[token])
        found = await self._await_fill(digest, lock)
        if found is not None:
            return found.body, found, False
        body, entry = await origin()
        return body, entry, True

    async def _put(self, digest: str, entry: Entry) -> None:
        lifetime_ms = max(int((entry.ttl_s + entry.grace_s) * 1000), 1)
        try:
            await self._redis.set(f"{self._prefix}e:{digest}", encode(entry), px=lifetime_ms)
        except redis.RedisError as error:
            self._breaker.trip()
            logger.warning("edge cache: Redis write failed (%s); entry kept locally", error)

    async def _await_fill(self, digest: str, lock: str) -> Entry | None:
        deadline = time.monotonic() + LOCK_MS / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(WAIT_STEP_S)
            entry = await self.get(digest)
            if entry is not None:
                return entry
            try:
                if not await self._redis.exists(lock):
                    return await self.get(digest)
            except redis.RedisError:
                return None
        return None

    async def bump(self, names: list[str]) -> dict[str, int]:
        """Advance shared counters and announce them (locally only when Redis fails).

        Counters bumped only here while Redis failed are pushed to it once it answers
        again (`poll`), so the other replicas hear of them then rather than at TTL.
        """
        if self._breaker.open:
            self._unshared.update(names)
            return {name: self._generations.bump(name) for name in names}
        try:
            values = await self._share(names)
        except redis.RedisError as error:
            self._breaker.trip()
            self._unshared.update(names)
            logger.warning(
                "edge cache: Redis bump failed (%s); invalidated on this replica only", error
            )
            return {name: self._generations.bump(name) for name in names}
        return values

    async def _share(self, names: list[str]) -> dict[str, int]:
        """Raise `names` in the hash past what anyone has seen, apply and announce them."""
        known = [self._generations.value(name) for name in names]
        raised = await self._bump(keys=[self.generation_key], args=[*names, *known])
        values = dict(zip(names, (int(v) for v in raised), strict=True))
        for name, value in values.items():
            self._heard(name, value)
            self._generations.observe(name, value)
        await self._redis.publish(self.generation_key, json.dumps(values))
        return values

    def _heard(self, name: str, value: int) -> None:
        """A counter's value came announced (or from this replica's own bump)."""
        self._announced[name, value] = self._clock()

    async def poll(self) -> None:
        """Take every counter from the hash (at start, then every POLL_S).

        A value new to this replica that the poll finds before its announcement
        is applied at once; if the announcement of that very value has not come
        ANNOUNCE_GRACE_S later, it was lost (a later value announced does not
        make up for it), and that is counted and logged.
        """
        counters = await self._redis.hgetall(self.generation_key)
        self._breaker.reset()
        now = self._clock()
        for raw, count in counters.items():
            name, value = (raw.decode() if isinstance(raw, bytes) else raw), int(count)
            if self._polled and value > self._generations.value(name):
                self._unheard.setdefault((name, value), now)
            self._generations.observe(name, value)
        self._polled = True
        lost = [
            key
            for key, since in self._unheard.items()
            if key not in self._announced and now - since >= ANNOUNCE_GRACE_S
        ]
        self._unheard = {
            key: since
            for key, since in self._unheard.items()
            if key not in lost and key not in self._announced
        }
        self._announced = {
            key: at for key, at in self._announced.items() if now - at < ANNOUNCED_KEPT_S
        }
        if lost:
            CAUGHT_BY_POLL.inc(len(lost))
            logger.info("edge cache: %d invalidation(s) never announced, caught", len(lost))
        if self._unshared:
            unshared, self._unshared = sorted(self._unshared), set()
            try:
                await self._share(unshared)
            except redis.RedisError:
                self._unshared.update(unshared)
                raise

    async def listen(self) -> None:
        """Apply announced bumps until cancelled (reconnecting after failures)."""
        outage = Outage("edge cache: Redis announcements (polled meanwhile)", level=logging.WARNING)
        while True:
            try:
                async with self._subscriber.pubsub() as pubsub:
                    await pubsub.subscribe(self.generation_key)
                    outage.recovered()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        for name, value in json.loads(message["data"]).items():
                            self._heard(str(name), int(value))
                            self._generations.observe(str(name), int(value))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError, ValueError) as error:
                outage.failed(error)
                await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(redis.RedisError):
            await self._redis.aclose()
        with contextlib.suppress(redis.RedisError):
            await self._subscriber.aclose()
