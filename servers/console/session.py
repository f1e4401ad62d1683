"""Whose token a console or upload request carries, and calling the platform with it.

The console's HTTP surfaces are clients of the platform: they call it over
gRPC through one shared SDK client whose token source is a context variable,
set to the request's caller's token for the duration of each call. A request
carries its token as a bearer `Authorization` header (tus clients, scripts)
or in the console's session cookie (a signed-in browser).
"""

from __future__ import annotations

import contextlib
import contextvars
import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from starlette.requests import Request

#: The token of the request being served, if any.
CALLER_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("console_token", default="")
#: The session cookie holding a signed-in browser's token.
SESSION_COOKIE = "conductor_session"
#: The double-submit CSRF cookie, and the header scripts echo it in.
CSRF_COOKIE = "conductor_csrf"
CSRF_HEADER = "X-CSRF-Token"

ResultT = TypeVar("ResultT")


def caller_token() -> str:
    """The token source of the console's client: the current request's caller's token."""
    return CALLER_TOKEN.get()


def request_token(request: Request) -> str:
    """The bearer token a request carries (header first, then the session cookie); "" if none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(SESSION_COOKIE, "")


def csrf_ok(request: Request, submitted: str) -> bool:
    """Whether `submitted` equals the request's CSRF cookie (and there is one)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, submitted)


def cookie_without_csrf(request: Request) -> bool:
    """A state-changing request authenticated by the session cookie alone, without its CSRF header.

    Bearer requests (scripts, tus clients) are not exposed to CSRF: a browser
    never adds that header on its own.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return False
    if not request.cookies.get(SESSION_COOKIE):
        return False
    return not csrf_ok(request, request.headers.get(CSRF_HEADER, ""))


@contextlib.contextmanager
def calling_as(token: str) -> Iterator[None]:
    """Within the block, the console client calls with `token`."""
    calling = CALLER_TOKEN.set(token)
    try:
        yield
    finally:
        CALLER_TOKEN.reset(calling)


async def call_as(request: Request, call: Callable[[], Awaitable[ResultT]]) -> ResultT:
    """Run `call` with the request's token as the console client's token."""
    with calling_as(request_token(request)):
        return await call()
