"""The platform's HTTP surfaces for people and standard tools: the web console, tus uploads.

Like the GraphQL facade, they reach the services over gRPC only, through the
SDK, with the caller's own token (`session`), so they can never show or do
what that token may not.
"""

from servers.console.pages import Console
from servers.console.session import call_as, caller_token
from servers.console.tus import TusEndpoint

__all__ = ["Console", "TusEndpoint", "call_as", "caller_token"]
