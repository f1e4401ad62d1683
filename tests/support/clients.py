"""SDK clients for tests: one per token, opened on first use, all closed together."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable

from intelgraph.sdk import INSECURE, AsyncClient, bearer_token


class SdkClients:
    """Async SDK clients of one platform, each closed with `closing`.

    Args:
        target: The platform's gRPC "host:port".
        closing: Closes every client opened here when it exits.
    """

    def __init__(self, target: str, closing: contextlib.AsyncExitStack) -> None:
        self.target = target
        self.closing = closing
        self._opened: dict[Hashable, AsyncClient] = {}

    def bearing(self, token: str) -> AsyncClient:
        """A new client calling with `token`."""
        client = AsyncClient(self.target, INSECURE, token=bearer_token(token))
        self.closing.push_async_callback(client.close)
        return client

    def keyed(self, key: Hashable, token: Callable[[], str]) -> AsyncClient:
        """The client of `key`, opened with a token from `token` on first use."""
        if key not in self._opened:
            self._opened[key] = self.bearing(token())
        return self._opened[key]
