"""Revoked tokens reach every replica: the shared table, polled, and Redis pub/sub when configured.

The authentication interceptor consults an in-process set (`InMemoryRevocations`)
on every call. This feed keeps that set in step with `token_revocations`: it
re-reads the live entries every half second (so a revocation committed on any
replica is refused everywhere within about that), and with `CONDUCTOR_REDIS_URL`
set it also listens to the channel revocations are announced on as they commit,
which brings the delay to a round trip. Redis is a fast path, never the only one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from datetime import datetime

import redis.asyncio as redis

from interceptors.tokens import InMemoryRevocations
from servers.access import store
from servers.db import Database, utc_now
from servers.jobs import Outage, every
from servers.runtime import Component, Foundation, Job
from servers.shared_tier import command_client, subscriber_client

logger = logging.getLogger(__name__)

CHANNEL = "conductor:revocations"
POLL_INTERVAL_S = 0.5


class RevocationFeed(Component):
    """Feeds revocations into this replica's in-process set (on every replica, always)."""

    @classmethod
    def of(cls, foundation: Foundation) -> RevocationFeed:
        """The feed of the platform's revocation set."""
        return cls(
            foundation.database, foundation.revocations, redis_url=foundation.settings.redis_url
        )

    def __init__(
        self, database: Database, revocations: InMemoryRevocations, *, redis_url: str = ""
    ) -> None:
        self._database = database
        self._revocations = revocations
        self._redis = command_client(redis_url) if redis_url else None
        self._subscriber = subscriber_client(redis_url) if redis_url else None

    async def refresh(self) -> int:
        """Load every live revocation from the shared table; returns how many there are."""
        async with self._database.platform_session(readonly=True) as session:
            rows = await store.live_revocations(session, utc_now())
        for jti, expires_at in rows:
            self._revocations.revoke(jti, expires_at.timestamp())
        return len(rows)

    async def announce(self, jti: str, expires_at: datetime) -> None:
        """Refuse `jti` here at once, and tell the other replicas (after the commit)."""
        self._revocations.revoke(jti, expires_at.timestamp())
        if self._redis is None:
            return
        try:
            await self._redis.publish(
                CHANNEL, json.dumps({"jti": jti, "exp": expires_at.timestamp()})
            )
        except redis.RedisError:
            logger.warning("could not announce a revocation on Redis; replicas poll within 0.5 s")

    async def listen(self) -> None:
        """Apply revocations announced on Redis until cancelled (reconnecting on failures)."""
        if self._subscriber is None:
            return
        outage = Outage("revocation channel on Redis (polled meanwhile)", level=logging.WARNING)
        while True:
            try:
                async with self._subscriber.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    outage.recovered()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        announced = json.loads(message["data"])
                        self._revocations.revoke(str(announced["jti"]), float(announced["exp"]))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError, ValueError, KeyError) as error:
                outage.failed(error)
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        """Refuse every live revocation before the first call."""
        await self.refresh()

    def background_jobs(self) -> list[Job]:
        """Poll the shared table, and listen on Redis (when configured)."""
        return [functools.partial(every, POLL_INTERVAL_S, self.refresh, "revocations"), self.listen]

    async def close(self) -> None:
        """Close the Redis connection, if any."""
        for client in (self._redis, self._subscriber):
            if client is not None:
                with contextlib.suppress(redis.RedisError):
                    await client.aclose()
