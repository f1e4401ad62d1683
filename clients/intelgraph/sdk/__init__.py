"""The IntelGraph Maestro Conductor SDK.

SDK users import from here, never from the generated `_pb2` modules.
"""

from intelgraph.sdk.errors import (
    AbortedError,
    AlreadyExistsError,
    ConductorError,
    DeadlineExceededError,
    ErrorReason,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    from_grpc_error,
)

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "ConductorError",
    "DeadlineExceededError",
    "ErrorReason",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "from_grpc_error",
]
