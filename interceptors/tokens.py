"""JWTs: minting with the current key, verifying against the ring, refusing revoked ones.

Verification takes the algorithm from the key the token names (`kid`), never
from the token's header, so `alg: none` and algorithm confusion (an HMAC token
"signed" with a public key) are refused by construction. It checks the
signature, `exp`, `nbf` and `iat` (with a small leeway), `iss`, `aud`, and the
required claims `sub`, `tenant` (a UUID), `scopes` (a list of strings) and
`jti`. Each failure has its own `ErrorReason`; no failure message repeats
anything from the token or the key.

Verified tokens are cached until they expire (or the ring changes), so the hot
path costs a dictionary lookup, not a signature check; revocation is checked on
every call, after the cache.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
from cachetools import LRUCache

from core.errors import ErrorReason, ReasonValue, Unauthenticated
from interceptors.keys import KeyRing, KeyStore
from interceptors.policy import CallerFacts

#: Claims every token must carry.
REQUIRED_CLAIMS = ("exp", "nbf", "iat", "iss", "aud", "sub", "tenant", "scopes", "jti")
#: The longest token accepted, in characters; longer ones are refused unread.
MAX_TOKEN_CHARS = 8192
#: Bounds of the claims a principal is built from (the policy and the logs read them).
MAX_SUBJECT_CHARS = 256
MAX_TOKEN_ID_CHARS = 128
MAX_SCOPES = 64
MAX_SCOPE_CHARS = 128
#: The furthest a token's `exp` may lie ahead: no token the platform issues lives longer.
MAX_LIFETIME_S = 366 * 86400


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for.

    Attributes:
        subject: The `sub` claim.
        tenant: The tenant the caller acts in; every store query is confined to it.
        tenant_id: `tenant` in its canonical text form, as policies see it.
        scopes: Granted scopes, e.g. ("catalog.read",).
        jit: True for a just-in-time token from an approved access request.
        token_id: The `jti` claim, for revocation.
        expires_at: Unix seconds of `exp`.
    """

    subject: str
    tenant: uuid.UUID
    tenant_id: str
    scopes: tuple[str, ...]
    jit: bool
    token_id: str
    expires_at: float
    #: The claims authorization decisions read, built once per verified token.
    facts: CallerFacts

    @property
    def expires(self) -> datetime:
        """`exp` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.expires_at, UTC)


class RevocationList(Protocol):
    """Where the verifier asks whether a token id was revoked (completed by the Access service)."""

    def is_revoked(self, token_id: str) -> bool:
        """True when the token with this `jti` must be refused."""
        ...


class InMemoryRevocations:
    """Revoked token ids in this process; each entry expires with its token.

    An entry whose token has expired is useless (the token is refused for its
    `exp` anyway): it stops counting at once and is dropped at the next purge,
    which runs whenever the set doubles, so it stays within twice the live
    revoked tokens (plus a small floor).
    """

    def __init__(self) -> None:
        self._revoked: dict[str, float] = {}
        self._purge_at = 1024

    def revoke(self, token_id: str, expires_at: float) -> None:
        """Refuse `token_id` until `expires_at` (Unix seconds)."""
        now = time.time()
        if expires_at <= now:
            return
        self._revoked[token_id] = expires_at
        if len(self._revoked) >= self._purge_at:
            self._purge(now)
            self._purge_at = max(1024, 2 * len(self._revoked))

    def is_revoked(self, token_id: str) -> bool:
        """True when `token_id` was revoked and has not expired (one dict lookup when not)."""
        expires_at = self._revoked.get(token_id)
        return expires_at is not None and expires_at > time.time()

    def _purge(self, now: float) -> None:
        self._revoked = {jti: until for jti, until in self._revoked.items() if until > now}

    def __len__(self) -> int:
        self._purge(time.time())
        return len(self._revoked)


def mint(
    ring: KeyRing,
    *,
    issuer: str,
    audience: str,
    subject: str,
    tenant: uuid.UUID,
    scopes: Sequence[str],
    ttl_s: float,
    jit: bool = False,
    now: float | None = None,
    token_id: str | None = None,
) -> str:
    """A JWT signed with the ring's current key."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "tenant": str(tenant),
        "scopes": list(scopes),
        "jit": jit,
        "jti": token_id or uuid.uuid4().hex,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_s),
    }
    key = ring.current
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})


#: How PyJWT's refusals map to reasons; anything else it refuses is "malformed".
_REFUSALS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], ReasonValue, str], ...] = (
    (jwt.ExpiredSignatureError, ErrorReason.ERROR_REASON_TOKEN_EXPIRED, "token expired"),
    (
        jwt.ImmatureSignatureError,
        ErrorReason.ERROR_REASON_TOKEN_NOT_YET_VALID,
        "token not yet valid",
    ),
    (
        jwt.InvalidAlgorithmError,
        ErrorReason.ERROR_REASON_TOKEN_ALGORITHM_INVALID,
        "token algorithm not accepted",
    ),
    (
        jwt.InvalidSignatureError,
        ErrorReason.ERROR_REASON_TOKEN_SIGNATURE_INVALID,
        "token signature invalid",
    ),
    (
        jwt.InvalidIssuerError,
        ErrorReason.ERROR_REASON_TOKEN_ISSUER_INVALID,
        "token issuer not accepted",
    ),
    (
        jwt.InvalidAudienceError,
        ErrorReason.ERROR_REASON_TOKEN_AUDIENCE_INVALID,
        "token audience not accepted",
    ),
    (
        (jwt.MissingRequiredClaimError, jwt.InvalidIssuedAtError),
        ErrorReason.ERROR_REASON_TOKEN_CLAIMS_INVALID,
        "token lacks a required claim",
    ),
)


def _refuse(reason: ReasonValue, message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


class TokenVerifier:
    """Turns bearer tokens into principals, or refuses them with a precise reason.

    Args:
        keys: The key store (its ring may rotate underneath).
        issuer: Required `iss`.
        audience: Required `aud`.
        leeway_s: Clock skew tolerated on `exp`, `nbf` and `iat` (not on a just-in-time
            token's `exp`: it ends with its grant).
        revocations: Consulted on every call.
        cache_size: How many verified tokens to remember.
    """

    def __init__(
        self,
        keys: KeyStore,
        *,
        issuer: str,
        audience: str,
        leeway_s: float,
        revocations: RevocationList,
        cache_size: int = 10_000,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._revocations = revocations
        # An LRU with the expiry checked on read: a fraction of TLRUCache's cost.
        self._verified: LRUCache[str, Principal] = LRUCache(maxsize=cache_size)
        self._generation = keys.generation

    def verify(self, token: str) -> Principal:
        """The principal of a valid, unrevoked token.

        Raises:
            Unauthenticated: With the reason the token is refused.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise _refuse(
                ErrorReason.ERROR_REASON_TOKEN_MALFORMED,
                f"token longer than {MAX_TOKEN_CHARS} characters",
            )
        ring = self._keys.ring()
        if self._keys.generation != self._generation:
            # A rotation or retirement: what verified before may not verify now.
            self._verified.clear()
            self._generation = self._keys.generation
        principal = self._verified.get(token)
        if principal is None or principal.expires_at + self._leeway <= time.time():
            principal = self._verify_signed(token, ring)
            self._verified[token] = principal
        if principal.jit and principal.expires_at <= time.time():
            # A just-in-time token ends exactly with its grant: the platform minted it from
            # the grant's end, so no issuer's clock skew is owed (the leeway is for those).
            raise _refuse(
                ErrorReason.ERROR_REASON_TOKEN_EXPIRED,
                "just-in-time token expired (its grant ended)",
            )
        if self._revocations.is_revoked(principal.token_id):  # after the cache, every call
            raise _refuse(ErrorReason.ERROR_REASON_TOKEN_REVOKED, "token revoked")
        return principal

    def _verify_signed(self, token: str, ring: KeyRing) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            # Not base64 or JSON, a `kid` that is not a string, a `crit` extension, ...
            raise _refuse(ErrorReason.ERROR_REASON_TOKEN_MALFORMED, "malformed token") from None
        kid = header.get("kid")
        key = ring.verification_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise _refuse(
                ErrorReason.ERROR_REASON_TOKEN_KEY_UNKNOWN, "token signed by an unknown key"
            )
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.InvalidTokenError as error:
            reason, message = next(
                (
                    (reason, message)
                    for kinds, reason, message in _REFUSALS
                    if isinstance(error, kinds)
                ),
                (ErrorReason.ERROR_REASON_TOKEN_MALFORMED, "malformed token"),
            )
            raise _refuse(reason, message) from None
        return _principal(claims)


def _bounded_text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and "\x00" not in value


def _principal(claims: dict[str, Any]) -> Principal:
    """The principal of verified claims, refused unless every claim it keeps is within bounds."""
    scopes = claims["scopes"]
    subject = claims["sub"]
    token_id = claims["jti"]
    expires_at = claims["exp"]
    try:
        tenant = uuid.UUID(str(claims["tenant"]))
    except ValueError:
        tenant = None
    well_typed = (
        tenant is not None
        and _bounded_text(subject, MAX_SUBJECT_CHARS)
        and _bounded_text(token_id, MAX_TOKEN_ID_CHARS)
        and isinstance(scopes, list)
        and len(scopes) <= MAX_SCOPES
        and all(_bounded_text(scope, MAX_SCOPE_CHARS) for scope in scopes)
        and isinstance(claims.get("jit", False), bool)
        and isinstance(expires_at, int | float)
        # PyJWT has checked that it has not passed; it must not lie absurdly far ahead either.
        and expires_at <= time.time() + MAX_LIFETIME_S
    )
    if not well_typed or tenant is None:
        raise _refuse(ErrorReason.ERROR_REASON_TOKEN_CLAIMS_INVALID, "token claims malformed")
    return Principal(
        subject=subject,
        tenant=tenant,
        tenant_id=str(tenant),
        scopes=tuple(scopes),
        jit=bool(claims.get("jit", False)),
        token_id=token_id,
        expires_at=float(expires_at),
        facts=CallerFacts(subject, str(tenant), tuple(scopes), bool(claims.get("jit", False))),
    )


def subject_hash(subject: str) -> str:
    """A stable, short, one-way name for a subject: the same caller reads the same in every line.

    >>> subject_hash("alice") == subject_hash("alice") != subject_hash("bob")
    True
    """
    return hashlib.sha256(subject.encode()).hexdigest()[:16]
