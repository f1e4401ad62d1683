"""Request bounds from the contract, on SQLite and PostgreSQL: hostile values are INVALID_ARGUMENT.

Before bounds: an out-of-range Timestamp was INTERNAL, a NUL byte was INTERNAL on PostgreSQL, a
1 MB string was stored as-is and echoed back in the error message, an enum number the contract
does not declare was silently ignored as a filter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.access.v1 import access_service_pb2 as access
from intelgraph.access.v1 import access_service_pb2_grpc
from intelgraph.billing.v1 import billing_service_pb2 as billing
from intelgraph.billing.v1 import billing_service_pb2_grpc
from intelgraph.common.v1.money_pb2 import Money
from intelgraph.sdk import ErrorReason, from_grpc_error

from core.errors import InvalidArgument
from interceptors.validation import within_bounds
from tests.support.serving import Minter, serving

HUGE = "x" * (1 << 20)


@pytest.fixture
async def stubs(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Minter]]:
    async with (
        serving(tmp_path / "var", database_url=database_url) as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as channel,
    ):
        yield (
            access_service_pb2_grpc.AccessServiceStub(channel),
            billing_service_pb2_grpc.BillingServiceStub(channel),
            Minter(platform.settings),
        )


def _far(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


async def test_hostile_values_are_refused_naming_the_field(stubs: tuple[Any, Any, Minter]) -> None:
    people, money, minter = stubs
    metadata = minter.metadata()
    cases = [
        (
            people.RequestAccess,
            access.RequestAccessRequest(scope=["catalog.read"], expires_at=_far(2**62)),
            "expires_at",
        ),
        (
            people.RequestAccess,
            access.RequestAccessRequest(scope=["catalog.read"], expires_at=_far(1, nanos=-1)),
            "expires_at",
        ),
        (
            money.RecordUsage,
            billing.RecordUsageRequest(event_id="nul\x00byte", meter="api.call", quantity=1),
            "event_id",
        ),
        (
            money.RecordUsage,
            billing.RecordUsageRequest(event_id=HUGE, meter="api.call", quantity=1),
            "event_id",
        ),
        (
            money.CreateRefund,
            billing.CreateRefundRequest(
                invoice_id="00000000-0000-4000-8000-000000000000",
                amount=Money(minor_units=1, currency_code="USD"),
                memo=HUGE,
            ),
            "memo",
        ),
        (
            money.RecordUsage,
            billing.RecordUsageRequest(event_id="esc\x1b[2J", meter="api.call", quantity=1),
            "event_id",
        ),
        (
            money.ListInvoices,
            billing.ListInvoicesRequest(status=billing.InvoiceStatus.ValueType(999)),
            "status",
        ),
        (
            people.ListAccessRequests,
            access.ListAccessRequestsRequest(status=access.AccessRequestStatus.ValueType(-1)),
            "status",
        ),
    ]
    for rpc, request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await rpc(request, metadata=metadata)
        error = from_grpc_error(raised.value)
        assert (error.code, error.reason, error.metadata.get("field")) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            ErrorReason.ERROR_REASON_INVALID_FIELD,
            field,
        ), error.details
        assert len(error.details) < 200
        assert "xxxxxxxx" not in error.details


def test_paths_name_the_nested_field_and_never_the_value() -> None:
    check = within_bounds(billing.CreateCreditNoteRequest.DESCRIPTOR)
    request = billing.CreateCreditNoteRequest(invoice_id="i")
    for _ in range(3):
        request.lines.add(invoice_line_id="l")
    request.lines[2].amount.minor_units = 10**16
    with pytest.raises(InvalidArgument) as refused:
        check(request)
    assert refused.value.field == "lines[2].amount.minor_units"
    assert str(10**16) not in refused.value.message
    check(billing.CreateCreditNoteRequest(invoice_id="i", memo="m" * 1000))  # within its bound
