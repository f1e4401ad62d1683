"""Channels, credentials, retries and the one client interceptor every SDK call goes through.

The interceptor adds the bearer token (from a `TokenSource`) and a default
deadline to each call, and turns every failure into the typed `ConductorError`
of its status and `ErrorInfo` reason (`intelgraph.sdk.errors`): once, for
unary and streaming calls, sync and async alike. Retries are gRPC's own,
configured through the channel's service config for the RPCs whose contract
makes them safe to send again (`RETRYABLE_METHODS`).

>>> source = bearer_token("abc")
>>> source()
'abc'
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from intelgraph.sdk.errors import from_grpc_error
from intelgraph.sdk.services import RETRYABLE_METHODS

#: Gives the bearer token for the next call (static, or refreshed as it nears its expiry);
#: an empty string sends the call without one.
TokenSource = Callable[[], str]
#: Where each call's extra metadata comes from, e.g. `lambda: [("x-request-id", rid)]`.
MetadataSource = Callable[[], Sequence[tuple[str, str]]]
#: Deadline in seconds of a call that names none and has no default of its own (the
#: generated methods pass their RPC's default from the contract).
DEFAULT_TIMEOUT_S = 30.0


def bearer_token(token: str) -> TokenSource:
    """A token source that always gives `token`."""
    if not token or token != token.strip():
        raise ValueError("a bearer token is a non-empty string without surrounding spaces")
    return lambda: token


class RefreshingToken:
    """A token source that fetches a new token shortly before the current one expires.

    `fetch` returns a fresh JWT (from a token service, a vault, `conductor token
    mint`...). Its `exp` claim is read, without verification and only to know
    when to fetch again: the platform verifies every token it receives. Safe to
    share between threads; one thread fetches while the others wait.

    Args:
        fetch: Returns a new token.
        margin_s: Fetch again this many seconds before `exp`.
        clock: Seconds since the epoch (time.time unless a test sets one).
    """

    def __init__(
        self,
        fetch: Callable[[], str],
        *,
        margin_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._margin_s = margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0

    def __call__(self) -> str:
        """The current token, fetched anew when it is within `margin_s` of expiring."""
        with self._lock:
            if not self._token or self._clock() >= self._refresh_at:
                token = self._fetch()
                self._refresh_at = expires_at(token) - self._margin_s
                self._token = token
            return self._token


def expires_at(token: str) -> float:
    """The `exp` claim of a JWT, in seconds since the epoch (read, not verified).

    Raises:
        ValueError: `token` is not a JWT with a numeric `exp`.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError) as error:
        raise ValueError("not a JWT with an exp claim") from error


@dataclass(frozen=True)
class TLS:
    """Transport security: the CA that signs the server's certificate, and for mTLS ours.

    Attributes:
        root_certificates: PEM of the CA to trust (None: the system's roots).
        certificate_chain: PEM of the client's certificate, for mTLS.
        private_key: PEM of the client's key, for mTLS.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    @classmethod
    def from_files(
        cls, ca: Path | None = None, certificate: Path | None = None, key: Path | None = None
    ) -> TLS:
        """Read the PEM files given."""
        return cls(
            ca.read_bytes() if ca else None,
            certificate.read_bytes() if certificate else None,
            key.read_bytes() if key else None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials these make."""
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )


#: Plaintext, for loopback and tests: asked for by name, never a default.
INSECURE = "insecure"


@dataclass(frozen=True)
class Retry:
    """How gRPC retries the RPCs whose contract makes a second attempt safe.

    Those are the RPCs marked NO_SIDE_EFFECTS or IDEMPOTENT, and those whose
    request carries an idempotency key (the SDK fills one in when the caller
    gives none). Waits grow from `initial_backoff_s` by `multiplier` up to
    `max_backoff_s`, with gRPC's jitter; all attempts share the call's deadline.

    Attributes:
        attempts: Attempts in all, the first included (gRPC allows at most 5).
        initial_backoff_s: Wait before the second attempt.
        max_backoff_s: Longest wait between attempts.
        multiplier: Growth of the wait per attempt.
        codes: Status codes that make an attempt worth repeating.
    """

    attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    codes: tuple[grpc.StatusCode, ...] = (grpc.StatusCode.UNAVAILABLE,)

    def __post_init__(self) -> None:
        if not 2 <= self.attempts <= 5:
            raise ValueError(f"attempts is between 2 and 5, not {self.attempts}")
        if self.initial_backoff_s <= 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("backoffs are positive, and the maximum is at least the initial")
        if self.multiplier < 1 or not self.codes:
            raise ValueError("multiplier is at least 1, and some status code is retried")

    def service_config(self, methods: Sequence[tuple[str, str]] = RETRYABLE_METHODS) -> str:
        """The gRPC service config (JSON) retrying `methods` this way."""
        policy = {
            "maxAttempts": self.attempts,
            "initialBackoff": f"{self.initial_backoff_s}s",
            "maxBackoff": f"{self.max_backoff_s}s",
            "backoffMultiplier": self.multiplier,
            "retryableStatusCodes": [code.name for code in self.codes],
        }
        names = [{"service": service, "method": method} for service, method in methods]
        return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


#: The retries of a client that names none.
DEFAULT_RETRY = Retry()


#: The largest response a client takes: a proof manifest of a large document runs past gRPC's
#: 4 MiB default (a 64 MiB document's is about 15 MB).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def channel_options(retry: Retry | None) -> list[tuple[str, str | int]]:
    """Channel arguments: the response size bound, balancing, and retries as `retry` says.

    Calls are spread round robin over every address the target names or resolves
    to (`ipv4:10.0.0.11:50051,10.0.0.12:50051`, or a DNS name with several
    records), skipping those that do not answer; one address behaves as before.
    """
    size = ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)
    balancing = ("grpc.lb_policy_name", "round_robin")
    if retry is None:
        return [size, balancing, ("grpc.enable_retries", 0)]
    return [
        size,
        balancing,
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry.service_config()),
        # The config is ours; never look one up in DNS.
        ("grpc.service_config_disable_resolution", 1),
    ]


#: Environment variables `Client.from_env` reads.
TARGET_VARIABLE = "CONDUCTOR_TARGET"
TOKEN_VARIABLE = "CONDUCTOR_TOKEN"  # noqa: S105 - the name of a variable, not a secret
PLAINTEXT_VARIABLE = "CONDUCTOR_PLAINTEXT"
TLS_VARIABLES = ("CONDUCTOR_TLS_CA", "CONDUCTOR_TLS_CERT", "CONDUCTOR_TLS_KEY")
_TRUE = {"1", "true", "yes"}


@dataclass(frozen=True)
class Connection:
    """Where and how to connect, as the environment says (see `from_env`)."""

    target: str
    security: TLS | str
    token: TokenSource | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Connection:
        """`CONDUCTOR_TARGET` (host:port), `CONDUCTOR_TOKEN` (optional), and security.

        Security is TLS: with the system's roots, or with `CONDUCTOR_TLS_CA` (a PEM
        path) and, for mTLS, `CONDUCTOR_TLS_CERT` and `CONDUCTOR_TLS_KEY`. Plaintext
        only when `CONDUCTOR_PLAINTEXT` is 1/true/yes, and never with TLS variables.

        Raises:
            ValueError: A variable is missing or they contradict each other.
        """
        target = environ.get(TARGET_VARIABLE, "").strip()
        if not target:
            raise ValueError(f"{TARGET_VARIABLE} is not set: give the platform's host:port")
        token = environ.get(TOKEN_VARIABLE, "").strip()
        files = [environ.get(name, "").strip() for name in TLS_VARIABLES]
        plaintext = environ.get(PLAINTEXT_VARIABLE, "").strip().lower() in _TRUE
        if plaintext and any(files):
            raise ValueError(f"{PLAINTEXT_VARIABLE} contradicts {', '.join(TLS_VARIABLES)}")
        ca, certificate, key = (Path(file) if file else None for file in files)
        security = INSECURE if plaintext else TLS.from_files(ca, certificate, key)
        return cls(target, security, bearer_token(token) if token else None)


def _details(
    details: grpc.ClientCallDetails,
    token: TokenSource | None,
    extra: MetadataSource | None = None,
) -> grpc.ClientCallDetails:
    metadata = list(details.metadata or ())
    if extra is not None:
        given = {key for key, _ in metadata}
        metadata.extend((key, value) for key, value in extra() if value and key not in given)
    if token is not None and not any(key == "authorization" for key, _ in metadata):
        value = token()
        if value:  # a source may have no token for this call: it then goes without one
            metadata.append(("authorization", f"Bearer {value}"))
    return _CallDetails(
        details.method,
        details.timeout if details.timeout is not None else DEFAULT_TIMEOUT_S,
        metadata,
        details.credentials,
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class ClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Token, default deadline and typed errors for a sync channel."""

    def __init__(self, token: TokenSource | None, metadata: MetadataSource | None = None) -> None:
        self._token = token
        self._metadata = metadata

    def _unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        outcome = continuation(_details(details, self._token, self._metadata), request)
        try:
            outcome.result()
        except grpc.RpcError as error:
            raise from_grpc_error(error) from None
        return outcome

    def _stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        responses = continuation(_details(details, self._token, self._metadata), request)
        return _mapped(responses)

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Unary call: token, deadline, typed errors."""
        return self._unary(continuation, client_call_details, request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Client-streaming call: token, deadline, typed errors (any iterable of requests)."""
        return self._unary(continuation, client_call_details, iter(request_iterator))

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Server-streaming call: token, deadline, typed errors while iterating."""
        return self._stream(continuation, client_call_details, request)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Bidirectional call: token, deadline, typed errors while iterating."""
        return self._stream(continuation, client_call_details, request_iterator)


def _mapped(responses: Any) -> Iterator[Any]:
    try:
        yield from responses
    except grpc.RpcError as error:
        raise from_grpc_error(error) from None
    finally:
        responses.cancel()  # a reader that stops early ends the call; a no-op once it is done


class _AsyncInterceptor:
    """Token, default deadline and typed errors for a `grpc.aio` channel (one kind of call).

    grpc.aio files a channel's interceptor under the first call kind it implements, so
    each kind has its own class, built together by `async_interceptors`.
    """

    def __init__(self, token: TokenSource | None, metadata: MetadataSource | None = None) -> None:
        self._token = token
        self._metadata = metadata

    async def _unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(_details(details, self._token, self._metadata), request)
        try:
            return _Answered(await call)
        except grpc.aio.AioRpcError as error:
            raise from_grpc_error(error) from None

    async def _stream(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(_details(details, self._token, self._metadata), request)
        return _async_mapped(call)


class _Answered(grpc.aio.UnaryUnaryCall):  # type: ignore[type-arg]
    """A call already answered, as grpc.aio wants an interceptor's unary answer to look."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def add_done_callback(self, callback: Any) -> None:
        callback(self)

    def time_remaining(self) -> float | None:
        return None

    async def initial_metadata(self) -> Any:
        return None

    async def trailing_metadata(self) -> Any:
        return None

    async def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    async def details(self) -> str:
        return ""

    async def debug_error_string(self) -> str:
        return ""

    async def wait_for_connection(self) -> None:
        return None

    def __await__(self) -> Any:
        yield from ()
        return self._response


class _AsyncUnaryUnary(_AsyncInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self._unary(continuation, client_call_details, request)


class _AsyncStreamUnary(_AsyncInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        if not hasattr(request_iterator, "__aiter__"):
            request_iterator = iter(request_iterator)  # a list or tuple works too
        return await self._unary(continuation, client_call_details, request_iterator)


class _AsyncUnaryStream(_AsyncInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self._stream(continuation, client_call_details, request)


class _AsyncStreamStream(_AsyncInterceptor, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._stream(continuation, client_call_details, request_iterator)


def async_interceptors(
    token: TokenSource | None, metadata: MetadataSource | None = None
) -> list[grpc.aio.ClientInterceptor]:
    """The platform's interceptor for every kind of `grpc.aio` call."""
    kinds = (_AsyncUnaryUnary, _AsyncStreamUnary, _AsyncUnaryStream, _AsyncStreamStream)
    return [kind(token, metadata) for kind in kinds]


async def _async_mapped(call: Any) -> AsyncIterator[Any]:
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as error:
        raise from_grpc_error(error) from None
    finally:
        call.cancel()  # a reader that stops early ends the call; a no-op once it is done


def open_channel(
    target: str, security: TLS | str, interceptors: Sequence[Any], retry: Retry | None
) -> grpc.Channel:
    """A sync channel to `target`: TLS, or plaintext only when `security` is `INSECURE`.

    `interceptors` run outermost first.
    """
    options = channel_options(retry)
    if isinstance(security, TLS):
        channel = grpc.secure_channel(target, security.credentials(), options=options)
    elif security == INSECURE:
        channel = grpc.insecure_channel(target, options=options)
    else:
        raise ValueError(f"security is a TLS(...) or {INSECURE!r}, not {security!r}")
    return grpc.intercept_channel(channel, *interceptors)


def open_async_channel(
    target: str,
    security: TLS | str,
    interceptors: list[grpc.aio.ClientInterceptor],
    retry: Retry | None,
) -> grpc.aio.Channel:
    """A `grpc.aio` channel to `target`: TLS, or plaintext only when `security` is `INSECURE`."""
    options = channel_options(retry)
    if isinstance(security, TLS):
        return grpc.aio.secure_channel(
            target, security.credentials(), options=options, interceptors=interceptors
        )
    if security == INSECURE:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    raise ValueError(f"security is a TLS(...) or {INSECURE!r}, not {security!r}")
