"""The IntelGraph Maestro Conductor SDK.

SDK users import from here, never from the generated `_pb2` modules:

    from intelgraph.sdk import Client, INSECURE, bearer_token

    with Client("127.0.0.1:50051", INSECURE, token=bearer_token(token)) as client:
        print(client.access.get_caller().subject)
"""

from intelgraph.sdk.client import AsyncClient, Client
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
from intelgraph.sdk.jit import (
    JitError,
    JitExpiredError,
    JitGrant,
    JitRefusedError,
    JitTimeoutError,
    request_jit,
    request_jit_async,
)
from intelgraph.sdk.streams import Destination, Source
from intelgraph.sdk.transport import (
    INSECURE,
    TLS,
    MetadataSource,
    RefreshingToken,
    Retry,
    TokenSource,
    bearer_token,
)
from intelgraph.sdk.uploads import upload_document, upload_document_async

__all__ = [
    "INSECURE",
    "TLS",
    "AbortedError",
    "AlreadyExistsError",
    "AsyncClient",
    "Client",
    "ConductorError",
    "DeadlineExceededError",
    "Destination",
    "ErrorReason",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "JitError",
    "JitExpiredError",
    "JitGrant",
    "JitRefusedError",
    "JitTimeoutError",
    "MetadataSource",
    "NotFoundError",
    "PermissionDeniedError",
    "RefreshingToken",
    "ResourceExhaustedError",
    "Retry",
    "Source",
    "TokenSource",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "bearer_token",
    "from_grpc_error",
    "request_jit",
    "request_jit_async",
    "upload_document",
    "upload_document_async",
]
