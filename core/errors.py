"""Domain errors: what servicers and domain code raise instead of touching gRPC.

Each error class carries the gRPC status code it stands for and a default
`ErrorReason`; the error-mapping interceptor (the outermost one) is the only
place that turns them into a status with a `google.rpc.ErrorInfo` detail. The
status of every reason is declared in the contract
(`intelgraph/common/v1/errors.proto`), so a reason can never travel with a
status other than its own: constructing an error with a reason of another
status fails at once.

>>> error = NotFound("access request 42 not found")
>>> error.status_code.name, reason_name(error.reason)
('NOT_FOUND', 'ERROR_REASON_NOT_FOUND')
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import cache
from typing import ClassVar, TypeAlias

import grpc
from intelgraph.common.v1 import errors_pb2

ErrorReason = errors_pb2.ErrorReason
ReasonValue: TypeAlias = errors_pb2.ErrorReason.ValueType

#: `google.rpc.ErrorInfo.domain` of every error the platform sends.
ERROR_DOMAIN = "intelgraph"


@cache
def status_code_of(reason: ReasonValue) -> grpc.StatusCode:
    """The status code the contract declares for `reason`.

    Raises:
        ValueError: `reason` is not a value of `ErrorReason`.
    """
    value = ErrorReason.DESCRIPTOR.values_by_number.get(reason)
    if value is None:
        raise ValueError(f"unknown ErrorReason {reason}")
    status_name: str = value.GetOptions().Extensions[errors_pb2.grpc_status]
    return grpc.StatusCode[status_name]


def reason_name(reason: ReasonValue) -> str:
    """The wire spelling of `reason` in `ErrorInfo.reason`, e.g. "ERROR_REASON_NOT_FOUND"."""
    return ErrorReason.Name(reason)


class DomainError(Exception):
    """Base of every error the platform reports to callers on purpose.

    Args:
        message: Human-readable status details; never secrets, tokens or internals.
        reason: The machine-readable reason; defaults to the class's own.
        metadata: String facts for `ErrorInfo.metadata` (for example the
            offending field), so clients need not parse the message.
    """

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    default_reason: ClassVar[ReasonValue] = ErrorReason.ERROR_REASON_INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: ReasonValue | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: ReasonValue = self.default_reason if reason is None else reason
        if status_code_of(self.reason) is not self.status:
            raise ValueError(
                f"{reason_name(self.reason)} is declared as "
                f"{status_code_of(self.reason).name}, not {self.status.name}"
            )
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def status_code(self) -> grpc.StatusCode:
        """The gRPC status code the caller receives."""
        return self.status


class InvalidArgument(DomainError):
    """A request field is missing or malformed; `field` names it for clients."""

    status = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = ErrorReason.ERROR_REASON_INVALID_FIELD

    def __init__(
        self,
        message: str,
        *,
        field: str,
        reason: ReasonValue | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata={"field": field, **(metadata or {})})
        self.field = field


def quoted(value: object, limit: int = 64) -> str:
    """`value` as a message may repeat it: quoted, and cut to `limit` characters.

    Messages never carry what a caller sent in full (it may be large, or made to
    look like something else in a log).

    >>> quoted("x" * 100, limit=8)
    "'xxxxxxxx…'"
    """
    text = str(value)
    return repr(text if len(text) <= limit else f"{text[:limit]}…")


def uuid_field(value: str, field: str) -> uuid.UUID:
    """A request field that must hold a UUID.

    Raises:
        InvalidArgument: It does not.
    """
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} is not a UUID", field=field) from None


class NotFound(DomainError):
    """The addressed resource does not exist for the caller's tenant."""

    status = grpc.StatusCode.NOT_FOUND
    default_reason = ErrorReason.ERROR_REASON_NOT_FOUND


class AlreadyExists(DomainError):
    """A resource with the same identity already exists."""

    status = grpc.StatusCode.ALREADY_EXISTS
    default_reason = ErrorReason.ERROR_REASON_ALREADY_EXISTS


class FailedPrecondition(DomainError):
    """The resource's state does not allow the operation."""

    status = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = ErrorReason.ERROR_REASON_FAILED_PRECONDITION


class Conflict(DomainError):
    """A concurrent change won; retrying the whole operation may succeed."""

    status = grpc.StatusCode.ABORTED
    default_reason = ErrorReason.ERROR_REASON_CONFLICT


class Unavailable(DomainError):
    """The server is draining or a dependency is down."""

    status = grpc.StatusCode.UNAVAILABLE
    default_reason = ErrorReason.ERROR_REASON_UNAVAILABLE


class ResourceExhausted(DomainError):
    """A quota, cap or size limit would be exceeded."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = ErrorReason.ERROR_REASON_RESOURCE_EXHAUSTED


class Unauthenticated(DomainError):
    """The call carries no valid credentials."""

    status = grpc.StatusCode.UNAUTHENTICATED
    default_reason = ErrorReason.ERROR_REASON_UNAUTHENTICATED


class PermissionDenied(DomainError):
    """The policy refused the call."""

    status = grpc.StatusCode.PERMISSION_DENIED
    default_reason = ErrorReason.ERROR_REASON_PERMISSION_DENIED


class DeadlineExceeded(DomainError):
    """The work did not finish within its deadline or budget."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = ErrorReason.ERROR_REASON_DEADLINE_EXCEEDED


class NotBuilt(DomainError):
    """The RPC is in the contract but its capability is not built yet."""

    status = grpc.StatusCode.UNIMPLEMENTED
    default_reason = ErrorReason.ERROR_REASON_NOT_IMPLEMENTED
