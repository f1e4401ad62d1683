"""The facade's resolvers: each root field calls its RPC through the SDK with the caller's token.

No business logic and no store here: a resolver checks the field's `@auth`
with the platform's policy engine, turns the arguments into the request
message (the JSON form of the proto), calls the RPC on the platform's own
gRPC port through the SDK's async client with the caller's bearer token (so
the full interceptor chain runs as for any gRPC client, and the SDK's
deadlines and retries apply), and turns the response back. The SDK's typed
errors become GraphQL errors with `extensions.code` (the status) and
`extensions.reason` (the `ErrorInfo` reason).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from graphql.language import IntValueNode, StringValueNode, ValueNode
from intelgraph.sdk import ConductorError, ErrorReason
from opentelemetry import trace

from core.errors import quoted
from graphql import GraphQLError, GraphQLSchema, build_schema
from interceptors.policy import MethodFacts, PolicyEngine
from interceptors.tokens import Principal
from servers.facade.schema import FacadeSchema, RootField

#: The bearer token of the request being resolved: the facade's client sends it with each call.
CALLER_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("caller_token", default="")


def caller_token() -> str:
    """The token source of the facade's client: the current request's caller's token, if any."""
    return CALLER_TOKEN.get()


def graphql_error(message: str, code: str, reason: str = "", **facts: str) -> GraphQLError:
    """A GraphQL error with the platform's machine-readable `extensions`."""
    extensions: dict[str, Any] = {"code": code}
    if reason:
        extensions["reason"] = reason
    extensions.update(facts)
    return GraphQLError(message, extensions=extensions)


@dataclass
class FacadeContext:
    """One HTTP request's caller: the bearer token and whom it verified as (if anyone)."""

    token: str | None
    principal: Principal | None


# -- scalars -------------------------------------------------------------------


def _date_time(value: Any) -> str:
    if not isinstance(value, str):
        raise GraphQLError("DateTime must be RFC 3339 text")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphQLError(f"not an RFC 3339 date and time: {quoted(value)}") from None
    if parsed.tzinfo is None:
        raise GraphQLError("DateTime needs a time zone, e.g. 2026-05-27T09:00:00Z")
    return value


def _int64(value: Any) -> str:
    if isinstance(value, bool):
        raise GraphQLError("Int64 must be an integer or a decimal string")
    try:
        return str(int(value, 10) if isinstance(value, str) else int(value))
    except (TypeError, ValueError):
        raise GraphQLError(f"not an Int64: {quoted(value)}") from None


def _base64(value: Any) -> str:
    if not isinstance(value, str):
        raise GraphQLError("Base64 must be text")
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise GraphQLError("not valid base64") from None
    return value


def _literal(parse: Any) -> Any:
    def parse_literal(node: ValueNode, _variables: Any = None) -> Any:
        if isinstance(node, StringValueNode | IntValueNode):
            return parse(node.value)
        raise GraphQLError("expected a string literal")

    return parse_literal


# -- conversion ------------------------------------------------------------------


def to_proto_json(values: Mapping[str, Any], message: Descriptor) -> dict[str, Any]:
    """GraphQL argument values → the proto JSON form of `message` (maps from entry lists)."""
    converted: dict[str, Any] = {}
    fields = {member.json_name: member for member in message.fields}
    for name, value in values.items():
        member = fields.get(name)
        if member is None or value is None:
            continue
        converted[name] = _field_to_json(member, value)
    return converted


def _field_to_json(member: FieldDescriptor, value: Any) -> Any:
    nested = member.message_type
    if nested is None or nested.full_name == "google.protobuf.Timestamp":
        return value
    if member.is_repeated and nested.GetOptions().map_entry:
        value_field = nested.fields_by_name["value"]
        return {entry["key"]: _field_to_json(value_field, entry["value"]) for entry in value}
    if member.is_repeated:
        return [to_proto_json(item, nested) for item in value]
    return to_proto_json(value, nested)


def _to_graphql(response: Any) -> dict[str, Any]:
    return json_format.MessageToDict(response, always_print_fields_with_no_presence=True)


# -- resolution ------------------------------------------------------------------


class Gateway:
    """Resolves root fields by calling their RPCs.

    Args:
        rpcs: Finds the SDK method of an RPC by its path: `AsyncClient.by_path` of a
            client of the platform's gRPC port whose token source is `caller_token`.
        engine: The policy engine the interceptors use.
        max_stream_items: Most messages a server-streaming read may return.
        tracer: Records a span per root field resolved (the RPC's client span is its
            child); None: no spans.
    """

    def __init__(
        self,
        rpcs: Callable[[str], Callable[..., Any]],
        engine: PolicyEngine,
        *,
        max_stream_items: int,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._rpcs = rpcs
        self._engine = engine
        self._max_stream_items = max_stream_items
        self._tracer = tracer

    def resolver(self, root: RootField) -> Any:
        """The resolver of one root field."""
        method = root.method
        request_class = message_factory.GetMessageClass(method.input_type)
        facts = MethodFacts(method.containing_service.full_name, method.name, root.permission)
        call = self._rpcs(root.path)

        async def resolve(_parent: Any, info: Any, **arguments: Any) -> Any:
            context: FacadeContext = info.context
            if not root.public:
                await self._authorize(context, facts, arguments)
            try:
                request = json_format.ParseDict(
                    to_proto_json(arguments, method.input_type), request_class()
                )
            except json_format.ParseError as error:
                raise graphql_error(str(error), "BAD_USER_INPUT") from None
            calling = CALLER_TOKEN.set(context.token or "")
            try:
                if method.server_streaming:
                    return await self._collect(call(request))
                response = await call(request)
            except ConductorError as error:
                raise _mapped(error) from None
            finally:
                CALLER_TOKEN.reset(calling)
            if root.returns_success:
                return True
            result: Any = _to_graphql(response)
            for name in root.result_path:
                result = result.get(name) if isinstance(result, dict) else None
            return result

        tracer = self._tracer
        if tracer is None:
            return resolve
        span_name = f"resolve {root.name}"
        attributes = {"graphql.field.name": root.name, "rpc.method": root.path}

        async def traced(parent: Any, info: Any, **arguments: Any) -> Any:
            with tracer.start_as_current_span(span_name, attributes=attributes):
                return await resolve(parent, info, **arguments)

        return traced

    async def _authorize(
        self, context: FacadeContext, facts: MethodFacts, arguments: Mapping[str, Any]
    ) -> None:
        principal = context.principal
        if principal is None:
            raise graphql_error(
                "missing bearer token",
                "UNAUTHENTICATED",
                ErrorReason.ERROR_REASON_TOKEN_MISSING.name,
            )
        resource = {}
        tenant = arguments.get("tenantId")
        if tenant:
            try:
                resource["tenant"] = str(uuid.UUID(str(tenant)))
            except ValueError:
                resource["tenant"] = str(tenant)
        decision = await self._engine.decision(principal.facts, facts, resource, int(time.time()))
        if not decision.allow:
            reasons = ",".join(decision.reasons) or "policy_denied"
            raise graphql_error(
                f"permission denied: {reasons}",
                "PERMISSION_DENIED",
                ErrorReason.ERROR_REASON_PERMISSION_DENIED.name,
                permission=facts.permission,
                denied=reasons,
            )

    async def _collect(self, responses: AsyncGenerator[Any, None]) -> list[dict[str, Any]]:
        collected: list[dict[str, Any]] = []
        async for response in responses:
            if len(collected) == self._max_stream_items:
                await responses.aclose()  # ends the call
                raise graphql_error(
                    f"the stream has more than {self._max_stream_items} messages; "
                    "read it over gRPC",
                    "RESOURCE_EXHAUSTED",
                )
            collected.append(_to_graphql(response))
        return collected


def _mapped(error: ConductorError) -> GraphQLError:
    """A platform error as a GraphQL error: status as `code`, `ErrorInfo` reason and metadata."""
    facts: dict[str, Any] = {"metadata": error.metadata} if error.metadata else {}
    return graphql_error(error.details, error.code.name, error.reason.name, **facts)


def executable_schema(facade: FacadeSchema, gateway: Gateway) -> GraphQLSchema:
    """The facade's SDL with its scalars, enums and resolvers wired in."""
    schema = build_schema(facade.sdl)
    for name, coerce in (("DateTime", _date_time), ("Int64", _int64), ("Base64", _base64)):
        scalar: Any = schema.type_map[name]
        scalar.coerce_output_value = coerce
        scalar.coerce_input_value = coerce
        scalar.coerce_input_literal = _literal(coerce)
    for name, values in facade.enums.items():
        enum: Any = schema.type_map[name]
        for short, proto_name in values.items():
            enum.values[short].value = proto_name
    for type_name, field_name in facade.output_maps:
        owner: Any = schema.type_map[type_name]
        owner.fields[field_name].resolve = _entries(field_name)
    for (operation, name), root in facade.roots.items():
        parent = schema.query_type if operation == "query" else schema.mutation_type
        assert parent is not None
        parent.fields[name].resolve = gateway.resolver(root)
    return schema


def _entries(field_name: str) -> Any:
    def resolve(parent: Mapping[str, Any], _info: Any) -> list[dict[str, Any]]:
        return [
            {"key": key, "value": value} for key, value in (parent.get(field_name) or {}).items()
        ]

    return resolve
