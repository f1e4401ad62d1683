"""Server interceptors, outermost first: errors, authentication, authorization, validation, metrics.

`platform_chain` is the chain every platform server runs.
"""

from interceptors.auth import (
    AuthenticationInterceptor,
    AuthorizationInterceptor,
    current_principal,
)
from interceptors.base import InterceptorChain, RpcMethod, ServerInterceptor, parse_method_name
from interceptors.errors import ErrorMappingInterceptor
from interceptors.metrics import MetricsInterceptor
from interceptors.policy import PolicyEngine
from interceptors.tokens import Principal, TokenVerifier
from interceptors.validation import RequiredFieldsGuard


def platform_chain(
    verifier: TokenVerifier, engine: PolicyEngine, *inner: ServerInterceptor
) -> InterceptorChain:
    """The interceptor chain every platform server runs, outermost first; `inner` go last."""
    return InterceptorChain(
        [
            ErrorMappingInterceptor(),
            AuthenticationInterceptor(verifier),
            AuthorizationInterceptor(engine),
            RequiredFieldsGuard(),
            MetricsInterceptor(),
            *inner,
        ]
    )


__all__ = [
    "AuthenticationInterceptor",
    "AuthorizationInterceptor",
    "ErrorMappingInterceptor",
    "InterceptorChain",
    "MetricsInterceptor",
    "PolicyEngine",
    "Principal",
    "RequiredFieldsGuard",
    "RpcMethod",
    "ServerInterceptor",
    "TokenVerifier",
    "current_principal",
    "parse_method_name",
    "platform_chain",
]
