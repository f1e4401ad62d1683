"""Contract tests from the descriptors: the rules every RPC of every service follows."""

from __future__ import annotations

import re

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from intelgraph.common.v1 import authorization_pb2, errors_pb2

from core.descriptors import cache_policy
from graphql import build_schema
from interceptors.validation import field_bounds
from servers.config import SERVICE_NAMES
from servers.edge.graph import build_mutation_graph
from servers.facade import (
    DEFAULT_OPERATIONS_DIR,
    SCHEMA_FILE,
    OperationRegistry,
    build_facade_schema,
)
from servers.registry import ServiceDefinition, all_services

SERVICES = all_services()
METHODS = [(service, method) for service in SERVICES for method in service.descriptor.methods]
METHOD_IDS = [f"{service.name}.{method.name}" for service, method in METHODS]

#: The RPC surface the foundation issue requires, at least.
REQUIRED_RPCS = {
    "access": "RequestAccess GetAccessRequest ListAccessRequests ApproveAccess DenyAccess "
    "ClaimGrant RevokeGrant ListGrants GetJwks ListAuditEvents VerifyAuditChain",
    "billing": "RecordUsage GetInvoice ListInvoices FinalizeInvoice PreviewCreditNote "
    "CreateCreditNote VoidCreditNote CreateRefund CalculateTax RunReconciliation "
    "GetReconciliationReport SetSpendCap GetRollout SetRollout ListBillingAlerts",
    "edge": "Purge GetCacheStats GetMutationGraph ListLeakAlarms SetTenantCacheCap",
    "rag": "UploadDocument GetUploadStatus ListChunks Summarize GetManifest VerifyManifest "
    "ListPurposeTemplates ExportDocument",
    "catalog": "CreateEntity GetEntity ListEntities UpdateEntity DeleteEntity RecordSloEvents "
    "GetSloStatus CalculateErrorBudget GetAlertRules GetAvailability RunWhatIf SaveScenario "
    "GetScenario ListScenarios RenameScenario DeleteScenario ExportCsv ImportCatalog "
    "ExportCatalog LinkBudget",
    "analytics": "ImportGraph ListPacks EstimatePack RunPack",
}
#: RPCs whose streaming shape the issue fixes: (client streams, server streams).
STREAMING = {
    "UploadDocument": (True, False),
    "ImportGraph": (True, False),
    "ExportDocument": (False, True),
    "ExportCsv": (False, True),
}
PERMISSION = re.compile(r"^[a-z]+(\.[a-z]+(_[a-z]+)*)+$")
READ_PREFIXES = ("Get", "List", "Compute", "Calculate", "Estimate", "Export")


def _authorization(method: MethodDescriptor) -> authorization_pb2.Authorization:
    return method.GetOptions().Extensions[authorization_pb2.authorization]


def test_the_six_services_are_registered_in_order() -> None:
    assert tuple(service.name for service in SERVICES) == SERVICE_NAMES
    for service in SERVICES:
        title = service.name.capitalize()
        assert service.full_name == f"intelgraph.{service.name}.v1.{title}Service"
        assert service.descriptor.file.name == (
            f"intelgraph/{service.name}/v1/{service.name}_service.proto"
        )


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_each_service_has_its_required_rpcs(service: ServiceDefinition) -> None:
    names = {method.name for method in service.descriptor.methods}
    assert set(REQUIRED_RPCS[service.name].split()) <= names


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_every_rpc_declares_exactly_one_authorization_rule(
    service: ServiceDefinition, method: MethodDescriptor
) -> None:
    options = method.GetOptions()
    assert options.HasExtension(authorization_pb2.authorization), (
        f"{method.full_name} declares no (intelgraph.common.v1.authorization)"
    )
    rule = _authorization(method)
    kind = rule.WhichOneof("rule")
    assert kind is not None, f"{method.full_name} has an empty authorization"
    if kind == "permission":
        assert PERMISSION.match(rule.permission), rule.permission
    else:
        assert getattr(rule, kind) is True


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_rpc_messages_follow_the_naming_conventions(
    service: ServiceDefinition, method: MethodDescriptor
) -> None:
    package = f"intelgraph.{service.name}.v1"
    assert method.input_type.full_name == f"{package}.{method.name}Request"
    assert method.output_type.full_name == f"{package}.{method.name}Response"
    assert re.fullmatch(r"[A-Z][A-Za-z]+", method.name)
    expected = STREAMING.get(method.name, (False, False))
    assert (method.client_streaming, method.server_streaming) == expected


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_reads_are_declared_free_of_side_effects(
    service: ServiceDefinition, method: MethodDescriptor
) -> None:
    level = method.GetOptions().idempotency_level
    if method.name.startswith(READ_PREFIXES):
        assert level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS, method.full_name
    if level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS:
        assert not method.client_streaming, "a read cannot consume an upload"


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_lists_paginate_with_the_common_page_messages(
    service: ServiceDefinition, method: MethodDescriptor
) -> None:
    if not method.name.startswith("List"):
        return
    request_page = method.input_type.fields_by_name["page"]
    response_page = method.output_type.fields_by_name["page"]
    assert request_page.message_type is not None
    assert response_page.message_type is not None
    assert request_page.message_type.full_name == "intelgraph.common.v1.PageRequest"
    assert response_page.message_type.full_name == "intelgraph.common.v1.PageResponse"


def test_money_is_always_the_common_money_message() -> None:
    def money_like(service: ServiceDescriptor) -> list[str]:
        offenders = []
        for message in service.file.message_types_by_name.values():
            for field in message.fields:
                if field.name in {"amount", "total", "subtotal", "tax", "cap"} and (
                    field.message_type is None
                    or field.message_type.full_name != "intelgraph.common.v1.Money"
                ):
                    offenders.append(f"{message.full_name}.{field.name}")
        return offenders

    assert [name for s in SERVICES for name in money_like(s.descriptor)] == []


def test_every_error_reason_declares_a_real_status_code() -> None:
    for value in errors_pb2.ErrorReason.DESCRIPTOR.values:
        status = value.GetOptions().Extensions[errors_pb2.grpc_status]
        assert status in grpc.StatusCode.__members__, f"{value.name}: {status!r}"
        assert value.name.startswith("ERROR_REASON_")


def test_public_rpcs_are_few_and_deliberate() -> None:
    public = [
        method.full_name
        for _, method in METHODS
        if _authorization(method).WhichOneof("rule") == "public"
    ]
    assert public == [
        "intelgraph.access.v1.AccessService.GetJwks",
        "intelgraph.billing.v1.BillingService.GetJwks",
        "intelgraph.rag.v1.RagService.GetJwks",
    ]


def _sdl() -> str:
    return build_facade_schema(service.descriptor for service in SERVICES).sdl


def test_the_committed_graphql_schema_is_what_the_contracts_generate() -> None:
    assert SCHEMA_FILE.read_text() == _sdl(), "run `make gen` and commit graphql/schema.graphql"


def test_the_seed_schema_falls_out_of_the_access_contract() -> None:
    sdl = _sdl()
    seed_type = (
        "type AccessRequest {\n  id: ID!\n  requester: String!\n  scope: [String!]!\n"
        "  status: AccessRequestStatus!\n  expiresAt: DateTime\n"
    )
    assert seed_type in sdl
    for field in [
        "  accessRequests(page: PageRequestInput, status: AccessRequestStatus, requester: String)"
        ': [AccessRequest!]! @auth(abac: "admin.write")\n',
        "  requestAccess(scope: [String!]!, expiresAt: DateTime!, reason: String): ID!\n",
        "  approveAccess(id: ID!, grantEndsAt: DateTime, comment: String): Boolean"
        ' @auth(abac: "admin.write")\n',
        '  denyAccess(id: ID!, comment: String): Boolean @auth(abac: "admin.write")\n',
    ]:
        assert field in sdl


def test_every_committed_operation_validates_against_the_schema() -> None:
    registry = OperationRegistry(build_schema(_sdl()), DEFAULT_OPERATIONS_DIR)
    assert registry.problems == []
    assert {operation.name for operation in registry} >= {
        "AccessRequests",
        "ApproveAccess",
        "Caller",
        "DenyAccess",
        "Jwks",
        "RequestAccess",
    }


def test_the_mutation_graph_covers_every_implemented_mutation() -> None:
    services = all_services()
    built = [
        f"/{service.full_name}/{method.name}"
        for service in services
        for method in service.descriptor.methods
        if method.name not in service.unbuilt_rpcs()
    ]
    graph = build_mutation_graph((service.descriptor for service in services), built)
    covered, mutating = graph.coverage(implemented_only=True)
    uncovered = [
        m.method for m in graph.mutations.values() if m.implemented and not m.invalidated_reads
    ]
    assert covered == mutating > 0, f"mutations that invalidate nothing: {uncovered}"
    assert graph.coverage() == (len(graph.mutations), len(graph.mutations))


def test_declared_resources_name_real_messages() -> None:
    pool = descriptor_pool.Default()
    for service in all_services():
        for method in service.descriptor.methods:
            for name in cache_policy(method).resources:
                assert pool.FindMessageTypeByName(name).full_name == name, method.full_name


def _request_fields() -> dict[str, FieldDescriptor]:
    """Every field a request can carry, by "Message.field", through nested messages."""
    found: dict[str, FieldDescriptor] = {}
    seen: set[str] = set()
    pending = [method.input_type for _, method in METHODS]
    while pending:
        message = pending.pop()
        if message.full_name in seen or message.full_name.startswith("google.protobuf."):
            continue
        seen.add(message.full_name)
        for field in message.fields:
            found[f"{message.full_name}.{field.name}"] = field
            if field.message_type is not None:
                pending.append(field.message_type)
    return found


def test_every_wide_integer_a_request_carries_declares_its_bounds() -> None:
    """64-bit integers reach sums and products (money, quantities, sizes): each says its range."""
    wide = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64}
    unbounded = [
        name
        for name, field in _request_fields().items()
        if field.type in wide
        and not (field_bounds(field).HasField("min") and field_bounds(field).HasField("max"))
    ]
    assert unbounded == []


def test_declared_bounds_fit_their_fields() -> None:
    for name, field in _request_fields().items():
        bounds = field_bounds(field)
        if bounds.max_len:
            assert field.type in {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES}, name
        if bounds.max_items:
            assert field.is_repeated, name
        if bounds.HasField("min") and bounds.HasField("max"):
            assert bounds.min <= bounds.max, name
