"""`/graphql`: persisted operations, ad-hoc documents within limits, GraphiQL in development.

Requests (GraphQL over HTTP, JSON): `POST {query | id, variables, operationName}`
(Apollo's `extensions.persistedQuery.sha256Hash` also names an id), or `GET`
with the same as query parameters for queries. A document whose text is a
registered operation counts as that operation.

* Production: only registered operations run, unless the caller holds
  `admin.write`; unknown ids are refused (`PERSISTED_QUERY_NOT_FOUND`), ad-hoc
  documents too (`PERSISTED_QUERY_REQUIRED`). With automatic registration on,
  an ad-hoc document sent with its id is registered (off by default).
* Development: ad-hoc documents run within the depth and field limits
  (`QUERY_TOO_DEEP`, `QUERY_TOO_COMPLEX`); GET with `Accept: text/html` serves GraphiQL.

Every problem is a GraphQL error with `extensions.code`, never a 500: the
request-level ones (`GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`,
`BAD_USER_INPUT`, `DOCUMENT_TOO_LARGE`, `UNAUTHENTICATED`, ...) with HTTP 400,
errors while resolving fields in a 200 response beside the data.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from core.errors import DomainError, ErrorReason, quoted, reason_name
from core.interfaces import CallerScope, ReadCache, UsageMeter
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from interceptors.policy import MethodFacts, PolicyEngine
from interceptors.tokens import Principal, TokenVerifier
from servers.facade import graphiql
from servers.facade.gateway import FacadeContext
from servers.facade.metrics import GRAPHQL_REQUESTS, GRAPHQL_SECONDS
from servers.facade.operations import OperationRegistry, measure, operation_id
from servers.facade.schema import Operation, RootField

logger = logging.getLogger(__name__)


#: What ad-hoc documents are checked against in production: holding it lifts the safelist.
ADHOC = MethodFacts("graphql", "AdHocDocument", "admin.write")


@dataclass(frozen=True)
class FacadeLimits:
    """What the endpoint accepts."""

    production: bool
    auto_register: bool
    max_document_bytes: int
    max_depth: int
    max_fields: int


class RequestProblem(Exception):
    """A request the endpoint refuses as a whole."""

    def __init__(self, message: str, code: str, **facts: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.facts = facts


@dataclass
class _Prepared:
    document: DocumentNode
    context: FacadeContext
    variables: dict[str, Any]
    operation_name: str | None
    #: The persisted operation's id; None for an ad-hoc document.
    operation_id: str | None


def _describe_operation(span: trace.Span, prepared: _Prepared) -> None:
    """Name the operation's span as OpenTelemetry's GraphQL conventions do: "query Name"."""
    operation = get_operation_ast(prepared.document, prepared.operation_name)
    kind = operation.operation.value if operation is not None else "query"
    name = operation.name.value if operation is not None and operation.name else ""
    span.update_name(f"{kind} {name}".strip())
    span.set_attribute("graphql.operation.type", kind)
    if name:
        span.set_attribute("graphql.operation.name", name)
    if prepared.operation_id is not None:
        span.set_attribute("graphql.persisted_operation.id", prepared.operation_id)


class GraphqlEndpoint:
    """The ASGI endpoint of `/graphql`."""

    def __init__(
        self,
        schema: GraphQLSchema,
        operations: OperationRegistry,
        verifier: TokenVerifier,
        engine: PolicyEngine,
        limits: FacadeLimits,
        *,
        metering: UsageMeter | None = None,
        cache: ReadCache | None = None,
        roots: Mapping[tuple[Operation, str], RootField] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._schema = schema
        self._tracer = tracer
        self._operations = operations
        self._verifier = verifier
        self._engine = engine
        self._limits = limits
        self._metering = metering
        self._cache = cache
        self._roots = roots or {}
        self._reads: dict[tuple[str, str | None], tuple[RootField, ...] | None] = {}

    async def handle(self, request: Request) -> Response:
        """Answer one GraphQL request (a Starlette endpoint)."""
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            if self._limits.production:
                return _problem(RequestProblem("GraphiQL is off in production", "NOT_FOUND"), 404)
            return HTMLResponse(graphiql.page(request.url.path), headers=graphiql.HEADERS)
        started = time.perf_counter()
        try:
            prepared = await self._prepare(request)
        except RequestProblem as problem:
            GRAPHQL_REQUESTS.labels("adhoc", "refused").inc()
            return _problem(problem, 400)
        operation = self._operation_label(prepared)
        cached = await self._from_cache(prepared)
        if cached is not None:
            GRAPHQL_REQUESTS.labels(operation, "cached").inc()
            GRAPHQL_SECONDS.labels(operation).observe(time.perf_counter() - started)
            return cached
        result = await self._execute(prepared)
        principal = prepared.context.principal
        if self._metering is not None and principal is not None and result.data is not None:
            self._metering.count(principal.tenant, "graphql.operation")
        GRAPHQL_REQUESTS.labels(operation, "errors" if result.errors else "ok").inc()
        GRAPHQL_SECONDS.labels(operation).observe(time.perf_counter() - started)
        return _respond(result)

    def _operation_label(self, prepared: _Prepared) -> str:
        """The persisted operation's name, or "adhoc" (the metrics' bounded label)."""
        if prepared.operation_id is None:
            return "adhoc"
        persisted = self._operations.get(prepared.operation_id)
        return persisted.name[:64] if persisted is not None else "adhoc"

    async def _execute(self, prepared: _Prepared) -> ExecutionResult:
        if self._tracer is None:
            return await self._run(prepared)
        with self._tracer.start_as_current_span("graphql") as span:
            if span.is_recording():
                _describe_operation(span, prepared)
            return await self._run(prepared)

    async def _run(self, prepared: _Prepared) -> ExecutionResult:
        result = execute(
            self._schema,
            prepared.document,
            context_value=prepared.context,
            variable_values=prepared.variables,
            operation_name=prepared.operation_name,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        return result

    async def _from_cache(self, prepared: _Prepared) -> Response | None:
        """The answer through the read cache; None when the request is not one it serves.

        Only persisted queries of a verified caller are cached, and only when
        the caller may run every root field (a refused caller gets the
        errors from the services, uncached).
        """
        principal = prepared.context.principal
        if self._cache is None or principal is None or prepared.operation_id is None:
            return None
        key = (prepared.operation_id, prepared.operation_name)
        if key not in self._reads:
            self._reads[key] = read_fields(prepared.document, prepared.operation_name, self._roots)
        roots = self._reads[key]
        if roots is None or not await self._may_run(principal, roots):
            return None

        async def origin() -> tuple[bytes, bool]:
            result = await self._execute(prepared)
            return bytes(_respond(result).body), result.data is not None and not result.errors

        caller = CallerScope(
            principal.tenant_id,
            principal.subject,
            principal.scopes,
            principal.jit,
            principal.token_id,
        )
        answer = await self._cache.answer(
            caller,
            f"{prepared.operation_id}:{prepared.operation_name or ''}",
            [root.method for root in roots],
            prepared.variables,
            origin,
        )
        if answer is None:
            return None
        if self._metering is not None:
            self._metering.count(principal.tenant, "graphql.operation")
        return Response(
            answer.body, media_type="application/json", headers={"x-cache": answer.kind}
        )

    async def _may_run(self, principal: Principal, roots: Iterable[RootField]) -> bool:
        now = int(time.time())
        for root in roots:
            if root.public:
                continue
            method = root.method
            facts = MethodFacts(method.containing_service.full_name, method.name, root.permission)
            if not (await self._engine.decision(principal.facts, facts, {}, now)).allow:
                return False
        return True

    async def _prepare(self, request: Request) -> _Prepared:
        payload = await self._payload(request)
        context = self._context(request)
        document, persisted_id = await self._document(payload, context)
        variables = payload.get("variables") or {}
        if not isinstance(variables, dict):
            raise RequestProblem("variables must be a JSON object", "BAD_USER_INPUT")
        operation_name = payload.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            raise RequestProblem("operationName must be a string", "BAD_USER_INPUT")
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            raise RequestProblem("no operation of that name", "BAD_USER_INPUT")
        if request.method == "GET" and operation.operation != OperationType.QUERY:
            raise RequestProblem("only queries may be sent with GET", "BAD_REQUEST")
        return _Prepared(document, context, variables, operation_name, persisted_id)

    async def _payload(self, request: Request) -> dict[str, Any]:
        if request.method == "GET":
            payload: dict[str, Any] = dict(request.query_params)
            for key in ("variables", "extensions"):
                if key in payload:
                    payload[key] = _json(payload[key], key)
            return payload
        body = await request.body()
        if len(body) > self._limits.max_document_bytes * 4:
            raise RequestProblem("request body too large", "DOCUMENT_TOO_LARGE")
        decoded = _json(body, "the request body")
        if not isinstance(decoded, dict):
            raise RequestProblem("the request body must be a JSON object", "BAD_REQUEST")
        return decoded

    def _context(self, request: Request) -> FacadeContext:
        headers = request.headers.getlist("authorization")
        if not headers:
            return FacadeContext(token=None, principal=None)
        if len(headers) > 1:
            raise RequestProblem(
                "more than one authorization header",
                "UNAUTHENTICATED",
                reason=reason_name(ErrorReason.ERROR_REASON_TOKEN_MALFORMED),
            )
        header = headers[0]
        if header[:7].lower() != "bearer " or not header[7:].strip():
            raise RequestProblem(
                "authorization header is not a bearer token",
                "UNAUTHENTICATED",
                reason=reason_name(ErrorReason.ERROR_REASON_TOKEN_MALFORMED),
            )
        token = header[7:].strip()
        try:
            return FacadeContext(token=token, principal=self._verifier.verify(token))
        except DomainError as error:
            raise RequestProblem(
                error.message, "UNAUTHENTICATED", reason=reason_name(error.reason)
            ) from None

    async def _document(
        self, payload: dict[str, Any], context: FacadeContext
    ) -> tuple[DocumentNode, str | None]:
        """The document to run, and the id of the persisted operation it is (if it is one)."""
        query = payload.get("query")
        identifier = payload.get("id") or _persisted_hash(payload.get("extensions"))
        if query is not None and not isinstance(query, str):
            raise RequestProblem("query must be a string", "BAD_USER_INPUT")
        if identifier is not None and not isinstance(identifier, str):
            raise RequestProblem("id must be a string", "BAD_USER_INPUT")
        if query is not None and len(query.encode()) > self._limits.max_document_bytes:
            raise RequestProblem(
                f"document larger than {self._limits.max_document_bytes} bytes",
                "DOCUMENT_TOO_LARGE",
            )
        if identifier is None and query is None:
            raise RequestProblem("send a query or the id of a persisted operation", "BAD_REQUEST")
        if identifier is not None:
            persisted = self._operations.get(identifier)
            if persisted is not None:
                return persisted.ast, persisted.id
            if query is None or not self._limits.auto_register:
                raise RequestProblem(
                    f"no persisted operation {quoted(identifier)}", "PERSISTED_QUERY_NOT_FOUND"
                )
            if operation_id(query) != identifier:
                raise RequestProblem("the id is not the SHA-256 of the query", "BAD_USER_INPUT")
            # Automatic registration (opt-in): the document joins the safelist.
            registered = self._operations.register(query, self._checked(_parsed(query)))
            return registered.ast, registered.id
        assert query is not None
        persisted = self._operations.get(operation_id(query))
        if persisted is not None:
            return persisted.ast, persisted.id
        ast = _parsed(query)
        # The same document, however a client library printed it, is the same operation.
        persisted = self._operations.matching(ast)
        if persisted is not None:
            return persisted.ast, persisted.id
        if self._limits.production and not await self._may_send_ad_hoc(context):
            raise RequestProblem(
                "only persisted operations run here; send the id of a registered one",
                "PERSISTED_QUERY_REQUIRED",
            )
        return self._checked(ast), None

    async def _may_send_ad_hoc(self, context: FacadeContext) -> bool:
        principal = context.principal
        if principal is None:
            return False
        decision = await self._engine.decision(principal.facts, ADHOC, {}, int(time.time()))
        return decision.allow

    def _checked(self, ast: DocumentNode) -> DocumentNode:
        """An ad-hoc document, refused unless within the limits and valid.

        Introspection alone may nest deeper and select more (GraphiQL's own query nests
        15 levels to unwrap list and non-null types): its cost is bounded by the schema,
        not the data.
        """
        size = measure(ast)
        max_depth, max_fields = self._limits.max_depth, self._limits.max_fields
        if _introspection_only(ast):
            max_depth = max(max_depth, INTROSPECTION_MAX_DEPTH)
            max_fields = max(max_fields, INTROSPECTION_MAX_FIELDS)
        if size.depth > max_depth:
            raise RequestProblem(
                f"document nests {size.depth} levels deep; the limit is {max_depth}",
                "QUERY_TOO_DEEP",
            )
        if size.fields > max_fields:
            raise RequestProblem(
                f"document selects {size.fields} fields; the limit is {max_fields}",
                "QUERY_TOO_COMPLEX",
            )
        errors = validate(self._schema, ast)
        if errors:
            raise RequestProblem(errors[0].message, "GRAPHQL_VALIDATION_FAILED")
        return ast


#: How deep a document that only introspects the schema may nest, and how many fields it may
#: select (GraphiQL's query: 15 levels, 220 fields).
INTROSPECTION_MAX_DEPTH = 20
INTROSPECTION_MAX_FIELDS = 500
_INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


def _introspection_only(document: DocumentNode) -> bool:
    """Whether every operation of `document` selects only introspection fields at its root."""
    operations = [
        node for node in document.definitions if isinstance(node, OperationDefinitionNode)
    ]
    return bool(operations) and all(
        isinstance(selection, FieldNode) and selection.name.value in _INTROSPECTION_FIELDS
        for operation in operations
        for selection in operation.selection_set.selections
    )


def _parsed(query: str) -> DocumentNode:
    try:
        return parse(query)
    except GraphQLError as error:
        raise RequestProblem(error.message, "GRAPHQL_PARSE_FAILED") from None


def _persisted_hash(extensions: Any) -> Any:
    if isinstance(extensions, dict):
        persisted = extensions.get("persistedQuery")
        if isinstance(persisted, dict):
            return persisted.get("sha256Hash")
    return None


def _json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise RequestProblem(f"{what} is not valid JSON", "BAD_REQUEST") from None


def _problem(problem: RequestProblem, status: int) -> JSONResponse:
    error = {"message": problem.message, "extensions": {"code": problem.code, **problem.facts}}
    return JSONResponse({"errors": [error]}, status_code=status)


def _respond(result: ExecutionResult) -> JSONResponse:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [_formatted(error) for error in result.errors]
    return JSONResponse(body)


def _formatted(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        incident = uuid.uuid4().hex[:16]
        logger.error(
            "unhandled error resolving %s (incident %s)", error.path, incident, exc_info=original
        )
        error = GraphQLError(
            f"internal error (incident {incident})",
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "incident": incident},
        )
    formatted: dict[str, Any] = dict(error.formatted)
    extensions: dict[str, Any] = dict(formatted.get("extensions") or {})
    extensions.setdefault(
        "code", "BAD_USER_INPUT" if error.path is None else "INTERNAL_SERVER_ERROR"
    )
    formatted["extensions"] = extensions
    return formatted


def read_fields(
    document: DocumentNode,
    operation_name: str | None,
    roots: Mapping[tuple[Operation, str], RootField],
) -> tuple[RootField, ...] | None:
    """The Query fields an operation reads, sorted by name; None when it is no cacheable read.

    Mutations, introspection and fields the schema does not have are never cached.
    """
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    names = _root_names(operation.selection_set, fragments) - {"__typename"}
    if not names or any(name.startswith("__") for name in names):
        return None  # introspection is not cached
    fields = [roots.get(("query", name)) for name in sorted(names)]
    chosen = tuple(field for field in fields if field is not None)
    return chosen if len(chosen) == len(fields) else None


def _root_names(
    selections: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> set[str]:
    names: set[str] = set()
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names |= _root_names(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                names |= _root_names(fragment.selection_set, fragments)
    return names
