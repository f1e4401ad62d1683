"""Authentication (JWT) and authorization (Rego ABAC) of every RPC, from its contract.

Each RPC's rule is its `(intelgraph.common.v1.authorization)` option:
`public` needs nothing; `authenticated` needs a valid token; `permission`
needs a valid token and a policy decision that allows it. Health checking
and reflection stay public. An RPC of an `intelgraph.*` service without a
rule is refused (fail closed); the contract tests keep that from happening.

The verified caller is available to servicers through `current_principal()`.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from intelgraph.common.v1 import authorization_pb2
from prometheus_client import Counter

from interceptors.base import Method, RpcMethod, ServerInterceptor, proceed
from interceptors.policy import PolicyEngine
from interceptors.tokens import Principal, TokenVerifier
from servers.errors import DomainError, ErrorReason, PermissionDenied, Unauthenticated, reason_name

logger = logging.getLogger(__name__)

#: Services that answer without a token: health checking and reflection.
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

REFUSED = Counter(
    "grpc_server_auth_refused_total",
    "Calls refused by authentication or authorization, by reason.",
    ("grpc_service", "grpc_method", "reason"),
)

_principal: ContextVar[Principal | None] = ContextVar("intelgraph_principal", default=None)


def current_principal() -> Principal:
    """The verified caller of the RPC being served.

    Raises:
        Unauthenticated: The RPC is public, so no caller was verified.
    """
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated(
            "this RPC needs a verified caller", reason=ErrorReason.ERROR_REASON_TOKEN_MISSING
        )
    return principal


@dataclass(frozen=True, slots=True)
class MethodRule:
    """An RPC's authorization rule, as its contract declares it."""

    kind: str  # "public" | "authenticated" | "permission" | "undeclared"
    permission: str = ""


def method_rule(rpc: RpcMethod) -> MethodRule:
    """Read the rule of `rpc` from its descriptor."""
    if rpc.service in PUBLIC_SERVICES:
        return MethodRule("public")
    options = rpc.descriptor.GetOptions() if rpc.descriptor is not None else None
    if options is None or not options.HasExtension(authorization_pb2.authorization):
        return MethodRule("undeclared")
    rule = options.Extensions[authorization_pb2.authorization]
    kind = rule.WhichOneof("rule")
    if kind == "permission" and rule.permission:
        return MethodRule("permission", rule.permission)
    if kind in {"authenticated", "public"} and getattr(rule, kind) is True:
        return MethodRule(kind)
    return MethodRule("undeclared")


class _Rules:
    """Rules by method name, read from descriptors once."""

    def __init__(self) -> None:
        self._rules: dict[str, MethodRule] = {}

    def __call__(self, rpc: RpcMethod) -> MethodRule:
        rule = self._rules.get(rpc.full_name)
        if rule is None:
            rule = self._rules[rpc.full_name] = method_rule(rpc)
        return rule


def bearer_token(context: grpc.aio.ServicerContext) -> str:
    """The token in the call's `authorization: Bearer <token>` metadata.

    Raises:
        Unauthenticated: There is none, or the metadata is not a bearer token.
    """
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated(
                    "authorization metadata is not a bearer token",
                    reason=ErrorReason.ERROR_REASON_TOKEN_MALFORMED,
                )
            return token.strip()
    raise Unauthenticated(
        "missing bearer token in authorization metadata",
        reason=ErrorReason.ERROR_REASON_TOKEN_MISSING,
    )


def _count_refusal(rpc: RpcMethod, error: DomainError) -> None:
    REFUSED.labels(rpc.service, rpc.name, reason_name(error.reason)).inc()


class AuthenticationInterceptor(ServerInterceptor):
    """Verifies the bearer token of every non-public call."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier
        self._rules = _Rules()

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        rpc: RpcMethod,
    ) -> Any:
        """Set the verified principal for the rest of the call, or refuse it."""
        if self._rules(rpc).kind != "public":
            try:
                principal = self._verifier.verify(bearer_token(context))
            except Unauthenticated as error:
                _count_refusal(rpc, error)
                raise
            # Each RPC runs in its own task, so this stays within the call.
            _principal.set(principal)
        return await proceed(method, request_or_iterator, context, rpc)


def request_resource(request: Any) -> dict[str, str]:
    """The resource attributes a request names: its `tenant_id`, if it has one."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None or "tenant_id" not in descriptor.fields_by_name:
        return {}
    tenant = request.tenant_id
    if not tenant:
        return {}
    try:
        return {"tenant": str(uuid.UUID(tenant))}
    except ValueError:
        return {"tenant": tenant}


class AuthorizationInterceptor(ServerInterceptor):
    """Asks the policy whether the verified caller may make this call."""

    def __init__(self, engine: PolicyEngine) -> None:
        self._engine = engine
        self._rules = _Rules()

    async def intercept(
        self,
        method: Method,
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext,
        rpc: RpcMethod,
    ) -> Any:
        """Let the call through if the policy allows it; refuse it with the reasons otherwise."""
        rule = self._rules(rpc)
        if rule.kind != "public":
            try:
                self._authorize(rule, request_or_iterator, rpc)
            except PermissionDenied as error:
                _count_refusal(rpc, error)
                raise
        return await proceed(method, request_or_iterator, context, rpc)

    def _authorize(self, rule: MethodRule, request: Any, rpc: RpcMethod) -> None:
        if rule.kind == "undeclared":
            raise PermissionDenied(
                f"{rpc.full_name} declares no authorization rule",
                metadata={"method": rpc.full_name},
            )
        principal = current_principal()
        resource = {} if rpc.request_streaming else request_resource(request)
        decision = self._engine.authorize(
            subject=principal.subject,
            tenant=str(principal.tenant),
            scopes=principal.scopes,
            jit=principal.jit,
            service=rpc.service,
            method=rpc.name,
            permission=rule.permission,
            resource=resource,
            now=int(time.time()),
        )
        if decision.allow:
            return
        reasons = ",".join(decision.reasons) or "policy_denied"
        logger.info(
            "refused %s for subject %s of tenant %s: %s",
            rpc.full_name,
            principal.subject,
            principal.tenant,
            reasons,
        )
        raise PermissionDenied(
            f"permission denied: {reasons}",
            metadata={"permission": rule.permission, "denied": reasons},
        )
