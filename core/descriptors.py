"""What the contracts' descriptors say about an RPC: its path, reads, authorization, caching.

The interceptors, the edge cache, the GraphQL facade and the SDK read RPCs
through these helpers, so "is this a read?" has one answer everywhere.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor
from intelgraph.common.v1 import authorization_pb2, cache_pb2

#: Method name prefixes that mark a read when the contract declares no idempotency level.
READ_PREFIXES = ("Get", "List", "Compute", "Estimate")


def method_path(method: MethodDescriptor) -> str:
    """The wire name, "/package.Service/Method"."""
    return f"/{method.containing_service.full_name}/{method.name}"


def is_read(method: MethodDescriptor) -> bool:
    """True for RPCs without side effects (declared, or by their name)."""
    level = method.GetOptions().idempotency_level
    return level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS or method.name.startswith(
        READ_PREFIXES
    )


def authorization(method: MethodDescriptor) -> authorization_pb2.Authorization | None:
    """The RPC's `(intelgraph.common.v1.authorization)` option; None when it declares none."""
    options = method.GetOptions()
    if not options.HasExtension(authorization_pb2.authorization):
        return None
    return options.Extensions[authorization_pb2.authorization]


def permission(method: MethodDescriptor) -> str:
    """The ABAC permission the RPC requires ("" when it is public or for any caller)."""
    rule = authorization(method)
    return rule.permission if rule is not None and rule.WhichOneof("rule") == "permission" else ""


def cache_policy(method: MethodDescriptor) -> cache_pb2.CachePolicy:
    """The RPC's `(intelgraph.common.v1.cache)` option (empty when not declared)."""
    return method.GetOptions().Extensions[cache_pb2.cache]
