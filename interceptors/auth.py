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
from collections.abc import Awaitable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from core.descriptors import authorization
from core.errors import DomainError, ErrorReason, PermissionDenied, Unauthenticated, reason_name
from interceptors.base import CallGuard, Check, Context, RpcMethod, invocation_metadata
from interceptors.policy import NO_RESOURCE, CallerFacts, Decision, MethodFacts, PolicyEngine
from interceptors.tokens import Principal, TokenVerifier, subject_hash

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


def verified_principal() -> Principal | None:
    """The verified caller of the RPC being served, if one was verified (for logs)."""
    return _principal.get()


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
    #: The (unary) request names a tenant (`tenant_id`), a resource attribute.
    reads_tenant: bool = False


def method_rule(rpc: RpcMethod) -> MethodRule:
    """Read the rule of `rpc` from its descriptor."""
    if rpc.service in PUBLIC_SERVICES:
        return MethodRule("public")
    descriptor = rpc.descriptor
    rule = authorization(descriptor) if descriptor is not None else None
    if descriptor is None or rule is None:
        return MethodRule("undeclared")
    reads_tenant = not rpc.request_streaming and "tenant_id" in descriptor.input_type.fields_by_name
    kind = rule.WhichOneof("rule")
    if kind == "permission" and rule.permission:
        return MethodRule("permission", rule.permission, reads_tenant)
    if kind in {"authenticated", "public"} and getattr(rule, kind) is True:
        return MethodRule(kind, "", reads_tenant)
    return MethodRule("undeclared")


def bearer_token(context: Context) -> str:
    """The token in the call's `authorization: Bearer <token>` metadata.

    Raises:
        Unauthenticated: There is none, more than one, or the metadata is not a bearer token.
    """
    values = [value for key, value in invocation_metadata(context) if key == "authorization"]
    if not values:
        raise Unauthenticated(
            "missing bearer token in authorization metadata",
            reason=ErrorReason.ERROR_REASON_TOKEN_MISSING,
        )
    if len(values) > 1:
        # Which one would count is a proxy's guess; refuse rather than pick.
        raise Unauthenticated(
            "more than one authorization metadata entry",
            reason=ErrorReason.ERROR_REASON_TOKEN_MALFORMED,
        )
    value = values[0]
    token = value[7:].strip() if isinstance(value, str) and value[:7].lower() == "bearer " else ""
    if not token:
        raise Unauthenticated(
            "authorization metadata is not a bearer token",
            reason=ErrorReason.ERROR_REASON_TOKEN_MALFORMED,
        )
    return token


def _count_refusal(rpc: RpcMethod, error: DomainError) -> None:
    REFUSED.labels(rpc.service, rpc.name, reason_name(error.reason)).inc()


class AuthenticationInterceptor(CallGuard):
    """Verifies the bearer token of every non-public call."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def prepare(self, rpc: RpcMethod) -> Check | None:
        """Public methods need no token; every other one a valid token."""
        if method_rule(rpc).kind == "public":
            return None
        verify = self._verifier.verify

        def authenticate(_request: Any, context: Context) -> None:
            try:
                principal = verify(bearer_token(context))
            except Unauthenticated as error:
                _count_refusal(rpc, error)
                raise
            # Each RPC runs in its own task, so this stays within the call.
            _principal.set(principal)

        return authenticate


def request_resource(request: Any) -> dict[str, str]:
    """The resource attributes a request names: its `tenant_id`, when set."""
    tenant = request.tenant_id
    if not tenant:
        return {}
    try:
        return {"tenant": str(uuid.UUID(tenant))}
    except ValueError:
        return {"tenant": tenant}


def peer_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str:
    """The client certificate's identity in a gRPC auth context: its CN, else its first SAN.

    >>> peer_identity({"x509_common_name": [b"ops-bot"]})
    'ops-bot'
    >>> peer_identity({"x509_subject_alternative_name": [b"spiffe://acme/ops"]})
    'spiffe://acme/ops'
    >>> peer_identity({})
    ''
    """
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth_context.get(key) or ():
            return bytes(value).decode("utf-8", "replace")
    return ""


class AuthorizationInterceptor(CallGuard):
    """Asks the policy whether the verified caller may make this call.

    Args:
        engine: The policy engine.
        peer_certificates: Whether connections carry client certificates (mTLS): their
            identity is then given to the policy as `peer_certificate`.
    """

    def __init__(self, engine: PolicyEngine, *, peer_certificates: bool = False) -> None:
        self._engine = engine
        self._peer_certificates = peer_certificates

    def prepare(self, rpc: RpcMethod) -> Check | None:
        """The policy check of a method, with its rule read once."""
        rule = method_rule(rpc)
        if rule.kind == "public":
            return None
        if rule.kind == "undeclared":

            def refuse(_request: Any, _context: Context) -> None:
                error = PermissionDenied(
                    f"{rpc.full_name} declares no authorization rule",
                    metadata={"method": rpc.full_name},
                )
                _count_refusal(rpc, error)
                raise error

            return refuse
        method = MethodFacts(rpc.service, rpc.name, rule.permission)
        engine = self._engine
        reads_tenant = rule.reads_tenant
        peer_certificates = self._peer_certificates

        def authorize(request: Any, context: Context) -> Awaitable[None] | None:
            principal = current_principal()
            facts = principal.facts
            if peer_certificates:
                facts = facts._replace(peer_certificate=peer_identity(context.auth_context()))
            resource = request_resource(request) if reads_tenant else NO_RESOURCE
            now = int(time.time())
            decision = engine.cached_decision(facts, method, resource, now)
            if decision is None:
                # A miss is evaluated off the event loop; the call waits for it.
                return _after_evaluation(principal, facts, resource, now)
            _enforce(decision, principal)
            return None

        async def _after_evaluation(
            principal: Principal, facts: CallerFacts, resource: Mapping[str, str], now: int
        ) -> None:
            _enforce(await engine.decision(facts, method, resource, now), principal)

        def _enforce(decision: Decision, principal: Principal) -> None:
            if decision.allow:
                return
            reasons = ",".join(decision.reasons) or "policy_denied"
            logger.info(
                "refused %s for subject %s of tenant %s: %s",
                rpc.full_name,
                subject_hash(principal.subject),
                principal.tenant,
                reasons,
            )
            error = PermissionDenied(
                f"permission denied: {reasons}",
                metadata={"permission": rule.permission, "denied": reasons},
            )
            _count_refusal(rpc, error)
            raise error

        return authorize
