"""Typed errors for SDK users: status code and `ErrorInfo` reason, decoded once.

Every failed call becomes a `ConductorError` subclass chosen by its status
code, carrying the machine-readable `reason` (an `ErrorReason` value), the
`ErrorInfo` metadata and the details text. Branch on the class or the reason,
never on the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from intelgraph.sdk.reasons import ErrorReason

#: Trailer carrying the serialised `google.rpc.Status` with the details.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_ERROR_DOMAIN = "intelgraph"


class ConductorError(Exception):
    """A call to the platform failed.

    Attributes:
        code: The gRPC status code.
        reason: The `ErrorReason` member the platform gave, or ERROR_REASON_UNSPECIFIED
            when the failure did not come from the platform (e.g. a network error) or
            names a reason newer than this SDK (`metadata` still holds its facts).
        metadata: Facts from `ErrorInfo.metadata`, e.g. {"field": "scope"}.
        details: The status details text.
    """

    status: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        details: str,
        *,
        code: grpc.StatusCode,
        reason: ErrorReason = ErrorReason.ERROR_REASON_UNSPECIFIED,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.reason = ErrorReason(reason)
        self.metadata = dict(metadata or {})
        self.details = details


class InvalidArgumentError(ConductorError):
    """INVALID_ARGUMENT: fix the request; `metadata["field"]` names the field."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ConductorError):
    """NOT_FOUND."""

    status = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ConductorError):
    """ALREADY_EXISTS."""

    status = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(ConductorError):
    """FAILED_PRECONDITION: the resource's state forbids the operation."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(ConductorError):
    """ABORTED: a concurrent change won; retry the whole operation."""

    status = grpc.StatusCode.ABORTED


class UnavailableError(ConductorError):
    """UNAVAILABLE: retry with backoff."""

    status = grpc.StatusCode.UNAVAILABLE


class ResourceExhaustedError(ConductorError):
    """RESOURCE_EXHAUSTED: a cap or quota was reached."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnauthenticatedError(ConductorError):
    """UNAUTHENTICATED: the token is missing or invalid."""

    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(ConductorError):
    """PERMISSION_DENIED: the policy refused the call."""

    status = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceededError(ConductorError):
    """DEADLINE_EXCEEDED."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(ConductorError):
    """UNIMPLEMENTED: the RPC is not built yet; `metadata["capability"]` says what brings it."""

    status = grpc.StatusCode.UNIMPLEMENTED


class InternalError(ConductorError):
    """INTERNAL: a platform fault; `metadata["incident"]` is in the server log."""

    status = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[ConductorError]] = {
    error.status: error
    for error in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        AbortedError,
        UnavailableError,
        ResourceExhaustedError,
        UnauthenticatedError,
        PermissionDeniedError,
        DeadlineExceededError,
        UnimplementedError,
        InternalError,
    )
    if error.status is not None
}


def from_grpc_error(error: grpc.RpcError) -> ConductorError:
    """The typed error for a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`)."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    reason = ErrorReason.ERROR_REASON_UNSPECIFIED
    metadata: dict[str, str] = {}
    for key, value in cast(Sequence[tuple[str, Any]], error.trailing_metadata() or ()):
        if key != _STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == _ERROR_DOMAIN:
                reason = ErrorReason.__members__.get(info.reason, reason)
                metadata = dict(info.metadata)
    return _BY_CODE.get(code, ConductorError)(details, code=code, reason=reason, metadata=metadata)
