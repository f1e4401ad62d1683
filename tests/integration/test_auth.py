"""Authentication and authorization through a running platform.

The matrix: every way a token can be bad x (unary, server-streaming,
client-streaming) x every service that has such an RPC; each case must get
its exact status code and reason, and a good token must reach the servicer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import jwt
import pytest
import pytest_asyncio
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.json_format import MessageToDict
from intelgraph.access.v1 import access_service_pb2 as access
from intelgraph.access.v1 import access_service_pb2_grpc
from intelgraph.billing.v1 import billing_service_pb2 as billing
from intelgraph.edge.v1 import edge_service_pb2 as edge
from intelgraph.sdk import ConductorError, ErrorReason, from_grpc_error
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from interceptors import PolicyEngine, keys, platform_chain, tokens
from servers.app import Platform
from servers.config import load_settings
from servers.registry import all_services
from tests.support.serving import OTHER_TENANT, TENANT, Minter
from tests.support.wire import invoke

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICES = {service.name: service for service in all_services()}


def _method(service: str, name: str) -> MethodDescriptor:
    return SERVICES[service].descriptor.methods_by_name[name]


#: (kind, method) for every service that has an RPC of that kind.
TARGETS = [
    ("unary", _method("access", "ListAccessRequests")),
    ("unary", _method("billing", "GetInvoice")),
    ("unary", _method("edge", "GetCacheStats")),
    ("unary", _method("rag", "GetUploadStatus")),
    ("unary", _method("catalog", "GetEntity")),
    ("unary", _method("analytics", "ListPacks")),
    ("server_stream", _method("rag", "ExportDocument")),
    ("server_stream", _method("catalog", "ExportCsv")),
    ("client_stream", _method("rag", "UploadDocument")),
    ("client_stream", _method("analytics", "ImportGraph")),
]
TARGET_IDS = [f"{kind}-{method.containing_service.name}.{method.name}" for kind, method in TARGETS]


def _unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Case:
    """A way to present a token, and what the platform must answer."""

    name: str
    metadata: Callable[[Minter, Platform], tuple[tuple[str, str], ...]]
    code: grpc.StatusCode
    reason: ErrorReason


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _minted_with(minter: Minter, key: keys.SigningKey) -> tuple[tuple[str, str], ...]:
    return _bearer(
        tokens.mint(
            keys.KeyRing(key),
            issuer=minter.settings.token_issuer,
            audience=minter.settings.token_audience,
            subject="mallory",
            tenant=TENANT,
            scopes=["catalog.read"],
            ttl_s=600,
        )
    )


def _signed_by_a_stranger(minter: Minter, _platform: Platform) -> tuple[tuple[str, str], ...]:
    ours = keys.load(minter.settings.signing_keys_dir).current
    # Our kid, someone else's private key.
    forged = keys.SigningKey(ours.kid, "EdDSA", keys.generate_key("EdDSA").private_key)
    return _minted_with(minter, forged)


def _unknown_key(minter: Minter, _platform: Platform) -> tuple[tuple[str, str], ...]:
    return _minted_with(minter, keys.generate_key("EdDSA"))


def _claims(minter: Minter, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": minter.settings.token_issuer,
        "aud": minter.settings.token_audience,
        "sub": "alice",
        "tenant": str(TENANT),
        "scopes": ["catalog.read"],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(minter: Minter, claims: dict[str, object]) -> tuple[tuple[str, str], ...]:
    key = keys.load(minter.settings.signing_keys_dir).current
    token = jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
    return _bearer(token)


def _alg_none(minter: Minter, _platform: Platform) -> tuple[tuple[str, str], ...]:
    kid = keys.load(minter.settings.signing_keys_dir).current.kid
    header = _unpadded(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    body = _unpadded(json.dumps(_claims(minter)).encode())
    return _bearer(f"{header}.{body}.")


def _hmac_with_the_public_key(minter: Minter, _platform: Platform) -> tuple[tuple[str, str], ...]:
    # Algorithm confusion: an HS256 "signature" keyed with our public key's bytes.
    key = keys.load(minter.settings.signing_keys_dir).current
    secret = key.public_jwk()["x"].encode()
    header = _unpadded(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = _unpadded(json.dumps(_claims(minter)).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return _bearer(f"{header}.{body}.{_unpadded(signature)}")


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> tuple[tuple[str, str], ...]:
    parts = (_unpadded(json.dumps(header).encode()), _unpadded(json.dumps(claims).encode()), "c2ln")
    return _bearer(".".join(parts))


def _kid_not_a_string(minter: Minter, _platform: Platform) -> tuple[tuple[str, str], ...]:
    return _unsigned({"alg": "EdDSA", "typ": "JWT", "kid": 5}, _claims(minter))


def _critical_extension(minter: Minter, _platform: Platform) -> tuple[tuple[str, str], ...]:
    kid = keys.load(minter.settings.signing_keys_dir).current.kid
    return _unsigned({"alg": "EdDSA", "kid": kid, "crit": ["exp"]}, _claims(minter))


def _revoked(minter: Minter, platform: Platform) -> tuple[tuple[str, str], ...]:
    token_id = uuid.uuid4().hex
    platform.revocations.revoke(token_id, time.time() + 600)
    return minter.metadata(token_id=token_id)


UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
R = ErrorReason
CASES = [
    Case("missing", lambda m, p: (), UNAUTHENTICATED, R.ERROR_REASON_TOKEN_MISSING),
    Case(
        "not_bearer",
        lambda m, p: (("authorization", "Basic YWxpY2U6c2VjcmV0"),),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_MALFORMED,
    ),
    Case(
        "malformed",
        lambda m, p: _bearer("not.a.jwt"),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_MALFORMED,
    ),
    Case(
        "expired",
        lambda m, p: m.metadata(now=time.time() - 3600, ttl_s=600),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_EXPIRED,
    ),
    Case(
        "not_yet_valid",
        lambda m, p: m.metadata(now=time.time() + 3600),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_NOT_YET_VALID,
    ),
    Case(
        "wrongly_signed",
        _signed_by_a_stranger,
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_SIGNATURE_INVALID,
    ),
    Case("unknown_kid", _unknown_key, UNAUTHENTICATED, R.ERROR_REASON_TOKEN_KEY_UNKNOWN),
    Case("alg_none", _alg_none, UNAUTHENTICATED, R.ERROR_REASON_TOKEN_ALGORITHM_INVALID),
    Case(
        "alg_confusion",
        _hmac_with_the_public_key,
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_ALGORITHM_INVALID,
    ),
    Case(
        "wrong_issuer",
        lambda m, p: m.metadata(issuer="someone-else"),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_ISSUER_INVALID,
    ),
    Case(
        "wrong_audience",
        lambda m, p: m.metadata(audience="another-api"),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_AUDIENCE_INVALID,
    ),
    Case(
        "missing_claim",
        lambda m, p: _signed(m, _claims(m, tenant=None)),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_CLAIMS_INVALID,
    ),
    Case(
        "mistyped_claim",
        lambda m, p: _signed(m, _claims(m, tenant="acme-corp")),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_CLAIMS_INVALID,
    ),
    Case("revoked", _revoked, UNAUTHENTICATED, R.ERROR_REASON_TOKEN_REVOKED),
    Case("kid_not_a_string", _kid_not_a_string, UNAUTHENTICATED, R.ERROR_REASON_TOKEN_MALFORMED),
    Case("crit_header", _critical_extension, UNAUTHENTICATED, R.ERROR_REASON_TOKEN_MALFORMED),
    Case(
        "absurd_exp",
        lambda m, p: _signed(m, _claims(m, exp=10**20)),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_CLAIMS_INVALID,
    ),
    Case(
        "too_many_scopes",
        lambda m, p: _signed(m, _claims(m, scopes=[f"s{i}" for i in range(65)])),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_CLAIMS_INVALID,
    ),
    Case(
        "two_authorization_entries",
        lambda m, p: (*m.metadata(), *m.metadata(["admin.write"])),
        UNAUTHENTICATED,
        R.ERROR_REASON_TOKEN_MALFORMED,
    ),
    Case(
        "policy_denied",
        lambda m, p: m.metadata(["billing.usage.write"]),
        grpc.StatusCode.PERMISSION_DENIED,
        R.ERROR_REASON_PERMISSION_DENIED,
    ),
    Case(
        "valid",
        lambda m, p: m.metadata(),
        grpc.StatusCode.OK,  # through authentication and authorization to the servicer
        R.ERROR_REASON_UNSPECIFIED,
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    settings = load_settings(grpc_port=0, http_port=0, var_dir=tmp_path_factory.mktemp("var"))
    running = Platform(settings)
    await running.start()
    yield running
    await running.stop(grace=0)


@pytest.fixture(scope="module")
def minter(platform: Platform) -> Minter:
    return Minter(platform.settings)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channel(platform: Platform) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.grpc_target) as opened:
        yield opened


async def _through_auth(
    channel: grpc.aio.Channel, method: MethodDescriptor, metadata: tuple[tuple[str, str], ...]
) -> None:
    """The call gets past authentication and authorization (whatever the service answers)."""
    try:
        await invoke(channel, method, metadata)
    except grpc.aio.AioRpcError as raised:
        code = raised.code()
    else:
        code = grpc.StatusCode.OK
    assert code not in {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


async def _outcome(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    metadata: tuple[tuple[str, str], ...],
    request: object = None,
) -> ConductorError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await invoke(channel, method, metadata, request)
    return from_grpc_error(raised.value)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize(("kind", "method"), TARGETS, ids=TARGET_IDS)
async def test_the_matrix(
    channel: grpc.aio.Channel,
    platform: Platform,
    minter: Minter,
    kind: str,
    method: MethodDescriptor,
    case: Case,
) -> None:
    metadata = case.metadata(minter, platform)
    if case.name == "valid":
        await _through_auth(channel, method, metadata)
        return
    error = await _outcome(channel, method, metadata)
    assert (error.code, error.reason.name) == (
        case.code,
        case.reason.name,
    ), error.details


async def test_refusals_leak_nothing_about_the_key_or_the_token(
    channel: grpc.aio.Channel, platform: Platform, minter: Minter
) -> None:
    ring = keys.load(minter.settings.signing_keys_dir)
    method = _method("catalog", "GetEntity")
    for case in CASES[:-2]:
        metadata = case.metadata(minter, platform)
        error = await _outcome(channel, method, metadata)
        shown = f"{error.details} {error.metadata}"
        assert ring.current.kid not in shown, case.name
        for _, value in metadata:
            for part in value.removeprefix("Bearer ").split("."):
                if len(part) > 8:
                    assert part not in shown, case.name
        assert "alice" not in shown
        assert str(TENANT) not in shown


async def test_denials_name_the_policy_reasons(channel: grpc.aio.Channel, minter: Minter) -> None:
    error = await _outcome(channel, _method("access", "ListAccessRequests"), minter.metadata([]))
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert error.metadata == {"permission": "admin.write", "denied": "admin_scope_required"}


async def test_a_request_naming_another_tenant_is_refused(
    channel: grpc.aio.Channel, minter: Minter
) -> None:
    other = edge.SetTenantCacheCapRequest(tenant_id=str(OTHER_TENANT), cap_bytes=1)
    method = _method("edge", "SetTenantCacheCap")
    # platform.admin may act on another tenant ...
    allowed = await invoke(channel, method, minter.metadata(["platform.admin"]), other)
    assert allowed.stats.tenant_id == str(OTHER_TENANT)
    assert allowed.stats.cap_bytes == 1
    # ... and the resource rule holds for everyone else (here: no scope either).
    refused = await _outcome(channel, method, minter.metadata(["edge.read"]), other)
    assert refused.metadata["denied"] == "scope_missing"


async def test_get_caller_answers_with_the_verified_identity(
    channel: grpc.aio.Channel, minter: Minter
) -> None:
    stub = access_service_pb2_grpc.AccessServiceStub(channel)
    token = minter(["catalog.read", "rag.read"], subject="svc-indexer", ttl_s=300)
    caller = await stub.GetCaller(access.GetCallerRequest(), metadata=_bearer(token))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert caller.subject == "svc-indexer"
    assert caller.tenant_id == str(TENANT)
    assert list(caller.scopes) == ["catalog.read", "rag.read"]
    assert caller.token_id == claims["jti"]
    assert caller.expires_at.seconds == claims["exp"]
    assert not caller.jit


# RFC 9864 deprecates the "EdDSA" name for "Ed25519"; we still issue "EdDSA",
# which every JOSE library accepts today (ADR 0005).
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")
async def test_tokens_verify_with_an_independent_jose_library(
    channel: grpc.aio.Channel, minter: Minter
) -> None:
    stub = access_service_pb2_grpc.AccessServiceStub(channel)
    jwks = MessageToDict(await stub.GetJwks(access.GetJwksRequest()))  # public: no token
    key_set = KeySet.import_key_set({"keys": jwks["keys"]})
    token = minter(["catalog.read"])
    decoded = jose_jwt.decode(token, key_set, algorithms=["EdDSA"])
    assert decoded.claims["tenant"] == str(TENANT)
    assert decoded.header["kid"] == jwks["keys"][0]["kid"]
    assert jwks["keys"][0] | {"x": "..."} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "...",
        "kid": jwks["keys"][0]["kid"],
        "alg": "EdDSA",
        "use": "sig",
    }


async def test_rotation_keeps_old_tokens_until_retirement(
    channel: grpc.aio.Channel, platform: Platform, minter: Minter
) -> None:
    stub = access_service_pb2_grpc.AccessServiceStub(channel)
    directory = platform.settings.signing_keys_dir
    before = minter(["catalog.read"])
    await stub.GetCaller(access.GetCallerRequest(), metadata=_bearer(before))

    ring = keys.rotate(directory, "ES256")  # as `conductor keys rotate` in another process
    platform_keys = platform.keys
    assert platform_keys is not None
    platform_keys.refresh()
    after = minter(["catalog.read"])
    assert jwt.get_unverified_header(after)["kid"] == ring.current.kid
    for token in (before, after):  # both keys verify during the overlap
        await stub.GetCaller(access.GetCallerRequest(), metadata=_bearer(token))
    served = MessageToDict(await stub.GetJwks(access.GetJwksRequest()))["keys"]
    assert ring.previous is not None
    assert [key["kid"] for key in served] == [ring.current.kid, ring.previous.kid]

    keys.retire_previous(directory)
    platform_keys.refresh()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetCaller(access.GetCallerRequest(), metadata=_bearer(before))
    assert from_grpc_error(raised.value).reason == ErrorReason.ERROR_REASON_TOKEN_KEY_UNKNOWN
    await stub.GetCaller(access.GetCallerRequest(), metadata=_bearer(after))


async def test_an_rpc_without_a_rule_is_refused_even_with_a_good_token(
    platform: Platform, minter: Minter
) -> None:
    async def ghost(_request: bytes, _context: object) -> bytes:
        return b"should never run"

    assert platform.keys is not None
    verifier = tokens.TokenVerifier(
        platform.keys,
        issuer=platform.settings.token_issuer,
        audience=platform.settings.token_audience,
        leeway_s=1,
        revocations=tokens.InMemoryRevocations(),
    )
    server = grpc.aio.server(interceptors=[platform_chain(verifier, PolicyEngine())])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "intelgraph.nowhere.v1.GhostService",
                {"Haunt": grpc.unary_unary_rpc_method_handler(ghost)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            haunt: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/intelgraph.nowhere.v1.GhostService/Haunt"
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await haunt(b"", metadata=minter.metadata())
    finally:
        await server.stop(0)
    error = from_grpc_error(raised.value)
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert "declares no authorization rule" in error.details


async def test_required_fields_are_checked_after_authorization(
    channel: grpc.aio.Channel, minter: Minter
) -> None:
    method = _method("billing", "GetInvoice")
    empty = billing.GetInvoiceRequest()
    invalid = await _outcome(channel, method, minter.metadata(["billing.read"]), empty)
    assert invalid.code is grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.reason == ErrorReason.ERROR_REASON_INVALID_FIELD
    assert invalid.metadata == {"field": "id"}
    # A caller who may not call it learns nothing about its requests.
    refused = await _outcome(channel, method, minter.metadata([]), empty)
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED
