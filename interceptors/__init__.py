"""Server interceptors, outermost first: error mapping, then metrics.

Authentication and authorization slot in between them (see the issue on JWT
and ABAC); `platform_chain` is the order the server uses.
"""

from interceptors.base import InterceptorChain, RpcMethod, ServerInterceptor, parse_method_name
from interceptors.errors import ErrorMappingInterceptor
from interceptors.metrics import MetricsInterceptor


def platform_chain() -> InterceptorChain:
    """The interceptor chain every platform server runs."""
    return InterceptorChain([ErrorMappingInterceptor(), MetricsInterceptor()])


__all__ = [
    "ErrorMappingInterceptor",
    "InterceptorChain",
    "MetricsInterceptor",
    "RpcMethod",
    "ServerInterceptor",
    "parse_method_name",
    "platform_chain",
]
