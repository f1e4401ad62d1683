"""Page tokens: one keyset decoder for every list; a forged position is INVALID_PAGE_TOKEN.

ListInvoices and ListLeakAlarms answered INTERNAL to a token with the right
fingerprint and a position that did not parse; every list now reads its
tokens through `core.pagination.Keyset`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.access.v1 import access_service_pb2 as access
from intelgraph.access.v1 import access_service_pb2_grpc
from intelgraph.billing.v1 import billing_service_pb2 as billing
from intelgraph.billing.v1 import billing_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageRequest
from intelgraph.edge.v1 import edge_service_pb2 as edge
from intelgraph.edge.v1 import edge_service_pb2_grpc
from intelgraph.sdk import ErrorReason, from_grpc_error

from core import errors as core_errors
from core.errors import InvalidArgument
from core.pagination import SEQUENCE, TIME_AND_ID, Page, _fingerprint
from tests.support.serving import Minter, serving

#: An id in forged positions (fixed: parameters must be the same in every collection).
ANY_ID = "524ecbed-4094-4f3b-a352-0c2b7a1d9e11"

#: Positions that are not what any list writes (after the right fingerprint).
FORGED = [
    None,
    "x",
    [],
    ["2026-11-30T10:00:00+00:00"],
    ["not a time", ANY_ID],
    ["2026-11-30T10:00:00", ANY_ID],  # no zone
    ["0001-01-01T00:00:00+05:00", ANY_ID],  # before year 1 in UTC
    ["9999-12-31T23:59:59-05:00", ANY_ID],  # after year 9999 in UTC
    ["2026-11-30T10:00:00+00:00", "not-a-uuid"],
    [12345, 678],
    [None, None],
    ["9999-12-31T23:59:59+00:00", ANY_ID, "extra"],
    [{"$gt": ""}, ANY_ID],
    [2**70],
    [-1],
    [True],
    ["5"],
    [1.5],
]


def _token(fingerprint: str, after: Any) -> str:
    return base64.urlsafe_b64encode(
        json.dumps({"q": fingerprint, "after": after}).encode()
    ).decode()


@pytest.mark.parametrize("after", FORGED, ids=[repr(value)[:40] for value in FORGED])
@pytest.mark.parametrize("keyset", [TIME_AND_ID, SEQUENCE], ids=["time_and_id", "sequence"])
def test_every_keyset_refuses_a_forged_position(after: Any, keyset: Any) -> None:
    filters = {"status": ""}
    with pytest.raises(InvalidArgument) as refused:
        Page.from_request(1, _token(_fingerprint(filters), after), filters=filters, keyset=keyset)
    assert refused.value.reason == core_errors.ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN


def test_a_position_round_trips() -> None:
    filters = {"kind": "x"}
    first = Page.from_request(1, "", filters=filters, keyset=TIME_AND_ID)
    moment, identifier = datetime(2026, 11, 30, 10, tzinfo=UTC), uuid.uuid4()
    token = first.next_token([object(), object()], lambda _row: (moment, identifier))
    again = Page.from_request(1, token, filters=filters, keyset=TIME_AND_ID)
    assert again.after == (moment, identifier)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@pytest.fixture
async def channel(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Minter]]:
    async with (
        serving(tmp_path / "var", database_url=database_url) as platform,
        grpc.aio.insecure_channel(platform.grpc_target) as opened,
    ):
        yield opened, Minter(platform.settings)


async def _refused(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = from_grpc_error(raised.value)
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN,
    ), error.details


def _reposition(token: str, after: Any) -> str:
    decoded = json.loads(base64.urlsafe_b64decode(token))
    return _token(decoded["q"], after)


async def test_every_list_refuses_a_forged_position(channel: tuple[Any, Minter]) -> None:
    opened, minter = channel
    metadata = minter.metadata()
    people = access_service_pb2_grpc.AccessServiceStub(opened)
    later = _timestamp(datetime.now(UTC) + timedelta(hours=1))
    for _ in range(2):
        await people.RequestAccess(
            access.RequestAccessRequest(scope=["catalog.read"], expires_at=later), metadata=metadata
        )
    one = PageRequest(page_size=1)
    # Lists with two items or more: a genuine token, its position replaced.
    genuine: dict[str, tuple[Any, Any]] = {
        "ListAccessRequests": (
            people.ListAccessRequests,
            access.ListAccessRequestsRequest(page=one),
        ),
        "ListAuditEvents": (people.ListAuditEvents, access.ListAuditEventsRequest(page=one)),
    }
    for name, (rpc, request) in genuine.items():
        token = (await rpc(request, metadata=metadata)).page.next_page_token
        assert token, name
        for after in FORGED:
            request.page.page_token = _reposition(token, after)
            await _refused(rpc(request, metadata=metadata))
    # Lists that are empty here: tokens forged with the fingerprint of their filters.
    money = billing_service_pb2_grpc.BillingServiceStub(opened)
    cache = edge_service_pb2_grpc.EdgeServiceStub(opened)
    forged = [
        (money.ListInvoices, billing.ListInvoicesRequest, {"status": ""}),
        (money.ListBillingAlerts, billing.ListBillingAlertsRequest, {"kind": ""}),
        (cache.ListLeakAlarms, edge.ListLeakAlarmsRequest, {"since": ""}),
    ]
    for rpc, request_class, filters in forged:
        for after in FORGED:
            page = PageRequest(page_token=_token(_fingerprint(filters), after))
            await _refused(rpc(request_class(page=page), metadata=metadata))
