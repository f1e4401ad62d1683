"""The outermost interceptor: domain errors become gRPC statuses, nothing else leaks.

A `DomainError` becomes its status code with the message as details and a
`google.rpc.ErrorInfo` (reason, domain "intelgraph", metadata) in the
`grpc-status-details-bin` trailer, which `grpcurl` and every gRPC client with
rich-status support decode. A dependency that cannot be reached (the
database restarting, its connection lost mid-call, its pool exhausted) is
UNAVAILABLE: the call can be repeated, and the SDK does so for the RPCs that
are safe to repeat. Any other exception becomes INTERNAL with an incident id;
the traceback goes to the server log under that id and never to the caller.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import exc as sql_errors

from core.errors import (
    ERROR_DOMAIN,
    DomainError,
    ErrorReason,
    InvalidArgument,
    Unavailable,
    reason_name,
)
from core.request_ids import REQUEST_ID_KEY, request_id
from interceptors.base import Context, Method, RpcMethod, ServerInterceptor, decoded_stream
from interceptors.outcomes import Outcome, outcome

logger = logging.getLogger(__name__)

#: Trailer that carries the serialised `google.rpc.Status`.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def rich_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str]
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """Build (code, details, trailing metadata) carrying an `ErrorInfo`."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return code, message, ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def _parsed(rpc: RpcMethod, request_or_iterator: Any) -> Any:
    """The request (or stream) parsed from bytes, when the chain left the parsing here."""
    if rpc.decode is None:
        return request_or_iterator
    if rpc.request_streaming:
        return decoded_stream(rpc, request_or_iterator)
    return rpc.decode(request_or_iterator)


#: SQLSTATEs of a database server that cannot take the call now: connection exceptions
#: (class 08), too many connections, and a server shutting down or starting.
_UNREACHABLE_STATES = ("08", "53300", "57P01", "57P02", "57P03")


def unreachable(error: BaseException) -> bool:
    """Whether `error` says a dependency could not be reached (the call may be repeated).

    Lost or refused database connections, a server restarting or out of
    connections, an exhausted pool, SQLite's busy file: not errors in the
    request or in our code. Anything else the database says (a missing table,
    a deadlock, a full disk, a statement timeout) stays an internal error.
    """
    if isinstance(error, sql_errors.DBAPIError):
        if error.connection_invalidated or isinstance(error, sql_errors.InterfaceError):
            return True
        if not isinstance(error, sql_errors.OperationalError):
            return False
        state = getattr(error.orig, "sqlstate", "")
        if state is None:  # psycopg: failed to connect, or the connection broke (no SQLSTATE)
            return True
        if state:
            return str(state).startswith(_UNREACHABLE_STATES)
        return "database is locked" in str(error.orig)  # SQLite: another writer holds the file
    return isinstance(error, sql_errors.TimeoutError | ConnectionError)


class ErrorMappingInterceptor(ServerInterceptor):
    """Maps exceptions raised below it to statuses with `ErrorInfo`.

    It also parses the requests (`decodes_requests`): one that is not a valid
    message of its type is refused with INVALID_ARGUMENT, not grpc's UNKNOWN.
    """

    decodes_requests = True

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: Context,
        rpc: RpcMethod,
    ) -> Any:
        """Run the call; abort with the mapped status if it raises."""
        if rpc.response_streaming:
            return self._map_stream(method, request_or_iterator, context, rpc)
        try:
            return await method(_parsed(rpc, request_or_iterator), context)
        except Exception as error:  # noqa: BLE001 - every failure must become a status
            await self._abort(error, context, rpc)

    async def _map_stream(
        self,
        method: Method,
        request_or_iterator: Any,
        context: Context,
        rpc: RpcMethod,
    ) -> AsyncIterator[Any]:
        try:
            async for response in method(_parsed(rpc, request_or_iterator), context):
                yield response
        except Exception as error:  # noqa: BLE001 - every failure must become a status
            await self._abort(error, context, rpc)

    async def _abort(self, error: Exception, context: Context, rpc: RpcMethod) -> NoReturn:
        if isinstance(error, grpc.aio.AbortError):
            # Something below already ended the call with a status of its own.
            raise error
        if isinstance(error, DecodeError):
            error = InvalidArgument(
                f"the request is not a valid {rpc.name} request message", field="request"
            )
        if unreachable(error):
            logger.warning("%s: a dependency is unreachable: %s", rpc.full_name, _first_line(error))
            error = Unavailable("a dependency of the platform is unreachable; retry shortly")
        if isinstance(error, DomainError):
            code, details, trailer = rich_status(
                error.status_code, error.message, reason_name(error.reason), error.metadata
            )
            outcome.set(Outcome(error.status_code.name, reason_name(error.reason)))
        else:
            incident = uuid.uuid4().hex[:16]
            logger.error(
                "unhandled error in %s (incident %s)", rpc.full_name, incident, exc_info=error
            )
            code, details, trailer = rich_status(
                grpc.StatusCode.INTERNAL,
                f"internal error (incident {incident})",
                reason_name(ErrorReason.ERROR_REASON_INTERNAL),
                {"incident": incident},
            )
            internal = reason_name(ErrorReason.ERROR_REASON_INTERNAL)
            outcome.set(Outcome("INTERNAL", internal, incident))
        trailing: tuple[tuple[str, str | bytes], ...] = trailer
        if request_id.get():
            trailing = (*trailer, (REQUEST_ID_KEY, request_id.get()))
        await context.abort(code, details, trailing_metadata=trailing)
        raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
