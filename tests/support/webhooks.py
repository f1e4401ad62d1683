"""A webhook receiver on a free local port, for tests of what the platform pushes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any


class Webhook:
    """A local HTTP endpoint that fails the first `failures` deliveries, then accepts.

    Entered, it listens and gives its URL (also `url`); `bodies` are the bodies it
    accepted (JSON, or as `decode` reads them), `idempotency_keys` their
    `idempotency-key` headers, in order.
    """

    def __init__(self, failures: int = 0, decode: Callable[[bytes], Any] = json.loads) -> None:
        self.failures = failures
        self._decode = decode
        self.bodies: list[Any] = []
        self.idempotency_keys: list[str] = []
        self.server: asyncio.Server | None = None
        self.url = ""
        self._arrived = asyncio.Condition()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def received(
        self,
        count: int,
        where: Callable[[Any], bool] = lambda _: True,
        timeout_s: float = 10.0,
    ) -> list[Any]:
        """The accepted bodies that match `where`, once there are `count` (timing out else)."""

        def matching() -> list[Any]:
            return [body for body in self.bodies if where(body)]

        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(matching()) >= count)
        return matching()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (
                line.decode("latin-1").partition(":") for line in head.split(b"\r\n")[1:] if line
            )
        }
        body = self._decode(await reader.readexactly(int(headers["content-length"])))
        status = b"500 Internal Server Error" if self.failures > 0 else b"200 OK"
        if self.failures > 0:
            self.failures -= 1
        else:
            async with self._arrived:
                self.bodies.append(body)
                self.idempotency_keys.append(headers.get("idempotency-key", ""))
                self._arrived.notify_all()
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
