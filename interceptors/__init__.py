"""Server interceptors, outermost first: access log, errors, auth, validation, limits, metrics.

`platform_chain` is the chain every platform server runs.
"""

from interceptors.access_log import AccessLogInterceptor
from interceptors.auth import (
    AuthenticationInterceptor,
    AuthorizationInterceptor,
    current_principal,
)
from interceptors.base import InterceptorChain, RpcMethod, ServerInterceptor, parse_method_name
from interceptors.errors import ErrorMappingInterceptor
from interceptors.metrics import MetricsInterceptor
from interceptors.policy import PolicyEngine
from interceptors.streams import StreamLimits, StreamLimitsInterceptor
from interceptors.tokens import Principal, TokenVerifier
from interceptors.validation import BoundsGuard, RequiredFieldsGuard


def platform_chain(
    verifier: TokenVerifier,
    engine: PolicyEngine,
    *inner: ServerInterceptor,
    stream_limits: StreamLimits | None = None,
    peer_certificates: bool = False,
) -> InterceptorChain:
    """The interceptor chain every platform server runs, outermost first; `inner` go last.

    `peer_certificates`: connections carry client certificates (mTLS), whose identity the
    policies see.
    """
    return InterceptorChain(
        [
            AccessLogInterceptor(),
            ErrorMappingInterceptor(),
            # Outside the checks, so that the gRPC metrics count refused calls too.
            MetricsInterceptor(),
            AuthenticationInterceptor(verifier),
            AuthorizationInterceptor(engine, peer_certificates=peer_certificates),
            RequiredFieldsGuard(),
            BoundsGuard(),
            StreamLimitsInterceptor(stream_limits or StreamLimits()),
            *inner,
        ]
    )


__all__ = [
    "AccessLogInterceptor",
    "AuthenticationInterceptor",
    "AuthorizationInterceptor",
    "BoundsGuard",
    "ErrorMappingInterceptor",
    "InterceptorChain",
    "MetricsInterceptor",
    "PolicyEngine",
    "Principal",
    "RequiredFieldsGuard",
    "RpcMethod",
    "ServerInterceptor",
    "StreamLimits",
    "StreamLimitsInterceptor",
    "TokenVerifier",
    "current_principal",
    "parse_method_name",
    "platform_chain",
]
