"""Clients of the shared tier (Redis) that cannot hang a request: timeouts, and a breaker.

Redis is a fast path between replicas, never the only one: whatever fails there
falls back (to the origin, to this replica alone, to the database's polling).
A partitioned Redis does not fail calls, it holds them; so commands get a short
timeout (`COMMAND_TIMEOUT_S`), and after one fails the `Breaker` sends callers
straight to their fallback for `Breaker.pause_s` before Redis is tried again.
Subscriptions wait for messages as long as they like, on a client of their own
(a timeout would end a quiet subscription), and reconnect when the connection dies.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as redis

#: Seconds a command may take (they take well under a millisecond when Redis is healthy).
COMMAND_TIMEOUT_S = 0.5


def command_client(url: str) -> redis.Redis:
    """A client for commands: connecting and each answer bounded by COMMAND_TIMEOUT_S."""
    return redis.from_url(
        url, socket_timeout=COMMAND_TIMEOUT_S, socket_connect_timeout=COMMAND_TIMEOUT_S
    )


def subscriber_client(url: str) -> redis.Redis:
    """A client for subscriptions: no read timeout; a dead connection found by keepalive."""
    return redis.from_url(
        url,
        socket_connect_timeout=COMMAND_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=15,
    )


class Breaker:
    """After a failure, say "skip Redis" for `pause_s` seconds.

    Args:
        pause_s: How long callers go straight to their fallback.
        clock: Monotonic seconds.
    """

    def __init__(self, pause_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.pause_s = pause_s
        self._clock = clock
        self._until = 0.0

    @property
    def open(self) -> bool:
        """Whether callers should skip Redis now."""
        return self._clock() < self._until

    def trip(self) -> None:
        """A command failed: skip Redis for a while."""
        self._until = self._clock() + self.pause_s

    def reset(self) -> None:
        """A command succeeded: use Redis again."""
        self._until = 0.0
