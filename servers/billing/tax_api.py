"""The sandbox tax API: the rate-table provider served over HTTP, as a remote tax API is.

`conductor billing tax-sandbox` serves it; a platform whose `CONDUCTOR_TAX_URL`
points to it taxes through it (`HttpTaxProvider`). Its answers are exactly what
`SandboxTaxProvider` computes in process, provider reference included (the same
request, the same reference), so a platform taxes the same either way, and the
chaos suite can make the tax provider fail or time out from outside the servers.

- `POST /v1/tax/calculate`: a `CalculationRequest` as application/json (checked
  strictly: exactly its fields, each of its JSON type, at most MAX_LINES lines
  and MAX_BODY_BYTES) → 200 and a `CalculationAnswer`; 400 `invalid_request`
  (413 too large, 415 not JSON); 422 `unknown_jurisdiction`; 503 `unavailable`
  while the provider's simulated outage is on. Refusals are a `Refusal`.
- `GET /healthz` → 200.

`serving` runs it under uvicorn in the caller's event loop, on a socket the
caller bound (so port 0 picks a free one, and a restart may take the same port).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servers.billing.tax import (
    CALCULATE_PATH,
    INVALID_REQUEST,
    MAX_BODY_BYTES,
    UNAVAILABLE,
    UNKNOWN_JURISDICTION,
    CalculationAnswer,
    CalculationRequest,
    Refusal,
    SandboxTaxProvider,
    TaxUnavailable,
    UnknownJurisdiction,
)

#: How many of a request's problems a 400 names.
_PROBLEMS_SHOWN = 3


def app(provider: SandboxTaxProvider | None = None) -> Starlette:
    """The sandbox tax API over `provider` (a fresh sandbox by default)."""
    sandbox = provider if provider is not None else SandboxTaxProvider()

    async def calculate(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _refused(415, INVALID_REQUEST, "send the request as application/json")
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > MAX_BODY_BYTES:
                return _refused(413, INVALID_REQUEST, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            wanted = CalculationRequest.model_validate_json(bytes(body))
        except ValidationError as error:
            return _refused(400, INVALID_REQUEST, _problems(error))
        try:
            calculation = await sandbox.calculate(
                wanted.lines_to_tax(),
                jurisdiction=wanted.jurisdiction,
                customer_tax_id=wanted.customer_tax_id,
                mode=wanted.mode,
                currency=wanted.currency,
            )
        except UnknownJurisdiction as error:
            return _refused(422, UNKNOWN_JURISDICTION, str(error))
        except TaxUnavailable as error:
            return _refused(503, UNAVAILABLE, str(error))
        return JSONResponse(CalculationAnswer.of(calculation).model_dump(mode="json"))

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route(CALCULATE_PATH, calculate, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn that leaves signals to whoever runs it (a command, a test)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(sock: socket.socket, api: Starlette | None = None) -> AsyncIterator[str]:
    """Serve `api` (the sandbox tax API by default) on the bound `sock`; yields its base URL.

    It serves from when the block is entered until it is left; leaving stops it, its
    connections and `sock` closed.

    Raises:
        RuntimeError: uvicorn stopped while starting.
    """
    with sock:
        server = _Uvicorn(
            uvicorn.Config(
                api if api is not None else app(),
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
            )
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    await task
                    raise RuntimeError("the tax API stopped while starting")
                await asyncio.sleep(0.005)
            host, port = sock.getsockname()[:2]
            yield f"http://{f'[{host}]' if sock.family == socket.AF_INET6 else host}:{port}"
        finally:
            server.should_exit = True
            await task


def _refused(status: int, error: str, message: str) -> Response:
    return JSONResponse(Refusal(error=error, message=message).model_dump(), status_code=status)


def _problems(error: ValidationError) -> str:
    """What is wrong with a request, field by field ("lines.0.amount: Input should be ...")."""
    found = error.errors(include_url=False, include_input=False)
    named = [
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in found[:_PROBLEMS_SHOWN]
    ]
    more = len(found) - _PROBLEMS_SHOWN
    return "; ".join(named) + (f"; and {more} more" if more > 0 else "")
