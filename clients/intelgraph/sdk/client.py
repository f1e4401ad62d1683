"""`Client` and `AsyncClient`: one channel, the platform's interceptor, a sub-client per service.

>>> from intelgraph.sdk import Client, INSECURE, bearer_token
>>> client = Client("127.0.0.1:50051", INSECURE, token=bearer_token("..."))
>>> client.access.get_caller  # doctest: +ELLIPSIS
<bound method AccessClient.get_caller of ...>
>>> client.close()
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
from intelgraph.sdk.services import AsyncServiceClients, ServiceClients
from intelgraph.sdk.transport import (
    DEFAULT_RETRY,
    TLS,
    ClientInterceptor,
    Connection,
    MetadataSource,
    Retry,
    TokenSource,
    async_interceptors,
    open_async_channel,
    open_channel,
)


class Client(ServiceClients):
    """The platform's services over one sync channel.

    Args:
        target: "host:port" of the gRPC listener.
        security: `TLS(...)` (or `TLS()` for the system's roots), or `INSECURE` by name.
        token: Where each call's bearer token comes from (None: calls carry none).
        metadata: Extra metadata for each call (a request id to forward, say).
        retry: How RPCs safe to repeat are retried (None: never). Deadlines are per
            RPC, from the contract, and each method takes a `timeout` of its own.
        interceptors: More `grpc` client interceptors (tracing, say), run inside the
            SDK's own: they see each call with its metadata, and its raw gRPC status.
    """

    def __init__(
        self,
        target: str,
        security: TLS | str,
        *,
        token: TokenSource | None = None,
        retry: Retry | None = DEFAULT_RETRY,
        metadata: MetadataSource | None = None,
        interceptors: Sequence[Any] = (),
    ) -> None:
        self.channel = open_channel(
            target, security, [ClientInterceptor(token, metadata), *interceptors], retry
        )
        super().__init__(self.channel)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, retry: Retry | None = DEFAULT_RETRY
    ) -> Client:
        """A client as `CONDUCTOR_TARGET`, `CONDUCTOR_TOKEN` and the TLS variables say.

        See `Connection.from_env`; plaintext only with `CONDUCTOR_PLAINTEXT=1`.
        """
        connection = Connection.from_env(environ)
        return cls(connection.target, connection.security, token=connection.token, retry=retry)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(AsyncServiceClients):
    """The platform's services over one `grpc.aio` channel (create it inside the event loop).

    Args:
        target: "host:port" of the gRPC listener.
        security: `TLS(...)`, or `INSECURE` by name.
        token: Where each call's bearer token comes from (None: calls carry none).
        metadata: Extra metadata for each call (a request id to forward, say).
        retry: How RPCs safe to repeat are retried (None: never). Deadlines are per
            RPC, from the contract, and each method takes a `timeout` of its own.
        interceptors: More `grpc.aio` client interceptors (tracing, say), run inside the
            SDK's own: they see each call with its metadata, and its raw gRPC status.
    """

    def __init__(
        self,
        target: str,
        security: TLS | str,
        *,
        token: TokenSource | None = None,
        retry: Retry | None = DEFAULT_RETRY,
        metadata: MetadataSource | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        self.channel = open_async_channel(
            target, security, [*async_interceptors(token, metadata), *interceptors], retry
        )
        super().__init__(self.channel)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, retry: Retry | None = DEFAULT_RETRY
    ) -> AsyncClient:
        """`Client.from_env` for the async client (call it inside the event loop)."""
        connection = Connection.from_env(environ)
        return cls(connection.target, connection.security, token=connection.token, retry=retry)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
