"""Billing through gRPC, on SQLite and PostgreSQL: usage, invoices, credit notes, refunds,
tax, idempotency, immutability, caps, rollout, reconciliation, signatures."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToDict
from intelgraph.billing.v1 import billing_service_pb2 as pb
from intelgraph.common.v1.money_pb2 import Money
from intelgraph.common.v1.pagination_pb2 import PageRequest
from intelgraph.sdk import ConductorError, ErrorReason
from sqlalchemy import func, select, text

from core.times import rfc3339
from servers.access.store import NotificationRow
from servers.app import Platform
from servers.billing.documents import VerificationError, public_keys, signed_parts, verify
from servers.billing.metering import Metering
from servers.billing.service import BillingService
from servers.billing.tax import SandboxTaxProvider
from servers.cli import main
from tests.support.billing import Biller, enrolled, new_biller
from tests.support.serving import serving
from tests.support.webhooks import Webhook

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def webhook() -> AsyncIterator[Webhook]:
    """Where the platform pushes its alerts (every tenant's: filter by `tenant_id`)."""
    hook = Webhook()
    async with hook:
        yield hook


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, webhook: Webhook
) -> AsyncIterator[Platform]:
    # Access is not served: its outbox is delivered wherever webhooks are configured.
    async with serving(
        tmp_path_factory.mktemp("var"),
        database_url=module_database_url,
        services="billing",
        webhook_urls=webhook.url,
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def biller(platform: Platform) -> AsyncIterator[Biller]:
    async with new_biller(platform) as caller:
        yield caller


def gbp(minor_units: int) -> Money:
    return Money(minor_units=minor_units, currency_code="GBP")


METERS = ("api.call", "analytics.pack_run", "graphql.operation", "rag.bytes")


async def invoice_with(biller: Biller, prices: list[int]) -> pb.Invoice:
    """A finalized invoice with one line per price (quantity 1 on its own meter)."""
    for meter, price in zip(METERS, prices, strict=False):
        await biller(
            "SetPrice",
            pb.SetPriceRequest(
                tenant_id=str(biller.tenant), meter=meter, unit_price=gbp(price), per_quantity=1
            ),
        )
        await biller(
            "RecordUsage",
            pb.RecordUsageRequest(event_id=uuid.uuid4().hex, meter=meter, quantity=1),
        )
    drafts = await biller("ListInvoices", pb.ListInvoicesRequest(status=pb.INVOICE_STATUS_DRAFT))
    (draft,) = drafts.invoices
    finalized: pb.FinalizeInvoiceResponse = await biller(
        "FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id)
    )
    assert finalized.invoice.status == pb.INVOICE_STATUS_FINALIZED
    return finalized.invoice


def line_credit(line: pb.InvoiceLine, amount: int | None = None) -> pb.CreditNoteLineInput:
    return pb.CreditNoteLineInput(
        invoice_line_id=line.id, amount=gbp(line.subtotal.minor_units if amount is None else amount)
    )


# -- invoices and credit notes ---------------------------------------------------------------


async def test_crediting_four_lines_one_by_one_returns_exactly_the_tax(biller: Biller) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [6833, 6833, 5750, 8500])
    assert [line.tax.minor_units for line in invoice.lines] == [1367, 1367, 1150, 1700]
    assert (invoice.subtotal.minor_units, invoice.tax.minor_units) == (27916, 5584)
    assert invoice.total.minor_units == 33500
    assert invoice.number.startswith(f"{invoice.series}-")
    credited_tax = 0
    for line in invoice.lines:
        note = await biller(
            "CreateCreditNote",
            pb.CreateCreditNoteRequest(
                invoice_id=invoice.id,
                lines=[line_credit(line)],
                reason=pb.CREDIT_NOTE_REASON_ORDER_CHANGE,
            ),
        )
        assert note.credit_note.tax.minor_units == line.tax.minor_units
        credited_tax += note.credit_note.tax.minor_units
    assert credited_tax == invoice.tax.minor_units
    after = await biller("GetInvoice", pb.GetInvoiceRequest(id=invoice.id))
    assert after.invoice.amount_credited.minor_units == invoice.total.minor_units
    more = await biller.refused(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=invoice.id, amount=gbp(1), reason=pb.CREDIT_NOTE_REASON_OTHER
        ),
    )
    assert more.reason == ErrorReason.ERROR_REASON_CREDIT_EXCEEDS_INVOICE


async def test_partial_credits_then_the_rest_return_exactly_each_lines_tax(biller: Biller) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [6833, 5750])
    first, second = invoice.lines
    taxes: list[int] = []
    for amount in (1, 3333, 1, None):  # odd pieces, then whatever is left
        left = first.subtotal.minor_units - sum(part for part in (1, 3333, 1)[: len(taxes)])
        note = await biller(
            "CreateCreditNote",
            pb.CreateCreditNoteRequest(
                invoice_id=invoice.id,
                lines=[line_credit(first, left if amount is None else amount)],
                reason=pb.CREDIT_NOTE_REASON_PRODUCT_UNSATISFACTORY,
            ),
        )
        assert (
            note.credit_note.subtotal.minor_units + note.credit_note.tax.minor_units
            == note.credit_note.total.minor_units
        )
        taxes.append(note.credit_note.tax.minor_units)
    assert sum(taxes) == first.tax.minor_units
    by_amount = await biller(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=invoice.id,
            amount=gbp(second.total.minor_units),
            reason=pb.CREDIT_NOTE_REASON_OTHER,
        ),
    )
    assert by_amount.credit_note.tax.minor_units == second.tax.minor_units
    over = await biller.refused(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=invoice.id, lines=[line_credit(first, 1)], reason=pb.CREDIT_NOTE_REASON_OTHER
        ),
    )
    assert over.reason == ErrorReason.ERROR_REASON_CREDIT_EXCEEDS_INVOICE
    assert over.metadata["invoice_line_id"] == first.id


async def test_preview_matches_what_is_issued_and_writes_nothing(biller: Biller) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [10001, 333])
    # The same fields, for a preview and for the credit note it previews.
    request: dict[str, Any] = {
        "invoice_id": invoice.id,
        "amount": gbp(5000),
        "reason": pb.CREDIT_NOTE_REASON_DUPLICATE,
        "memo": "double charge",
    }
    preview = await biller("PreviewCreditNote", pb.PreviewCreditNoteRequest(**request))
    assert (preview.credit_note.id, preview.credit_note.number, preview.credit_note.signature) == (
        "",
        "",
        "",
    )
    listed = await biller("ListCreditNotes", pb.ListCreditNotesRequest(invoice_id=invoice.id))
    assert not listed.credit_notes
    issued = await biller("CreateCreditNote", pb.CreateCreditNoteRequest(**request))
    assert [
        (line.invoice_line_id, line.subtotal.minor_units, line.tax.minor_units)
        for line in issued.credit_note.lines
    ] == [
        (line.invoice_line_id, line.subtotal.minor_units, line.tax.minor_units)
        for line in preview.credit_note.lines
    ]
    assert issued.credit_note.total.minor_units == 5000


async def test_credit_notes_are_refused_clearly(biller: Biller) -> None:
    await enrolled(biller)
    await biller("RecordUsage", pb.RecordUsageRequest(event_id="u1", meter="api.call", quantity=5))
    (draft,) = (await biller("ListInvoices", pb.ListInvoicesRequest())).invoices
    not_final = await biller.refused(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=draft.id, amount=gbp(1), reason=pb.CREDIT_NOTE_REASON_OTHER
        ),
    )
    assert not_final.reason == ErrorReason.ERROR_REASON_INVOICE_STATE
    invoice = (await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))).invoice
    dollars = await biller.refused(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=invoice.id,
            amount=Money(minor_units=1, currency_code="USD"),
            reason=pb.CREDIT_NOTE_REASON_OTHER,
        ),
    )
    assert dollars.code is grpc.StatusCode.INVALID_ARGUMENT
    no_reason = await biller.refused(
        "CreateCreditNote", pb.CreateCreditNoteRequest(invoice_id=invoice.id, amount=gbp(1))
    )
    assert no_reason.metadata["field"] == "reason"
    ghost = await biller.refused(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=str(uuid.uuid4()), amount=gbp(1), reason=pb.CREDIT_NOTE_REASON_OTHER
        ),
    )
    assert ghost.code is grpc.StatusCode.NOT_FOUND


# -- payments, refunds, voids ----------------------------------------------------------------


async def test_payments_refunds_and_voids_hold_their_limits(biller: Biller) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [10000])
    total = invoice.total.minor_units  # 120.00 with VAT
    early_refund = await biller.refused(
        "CreateRefund", pb.CreateRefundRequest(invoice_id=invoice.id, amount=gbp(1))
    )
    assert early_refund.reason == ErrorReason.ERROR_REASON_REFUND_EXCEEDS_PAID
    overpay = await biller.refused(
        "RecordPayment", pb.RecordPaymentRequest(invoice_id=invoice.id, amount=gbp(total + 1))
    )
    assert overpay.reason == ErrorReason.ERROR_REASON_PAYMENT_EXCEEDS_DUE
    await biller("RecordPayment", pb.RecordPaymentRequest(invoice_id=invoice.id, amount=gbp(total)))
    note = (
        await biller(
            "CreateCreditNote",
            pb.CreateCreditNoteRequest(
                invoice_id=invoice.id, amount=gbp(3000), reason=pb.CREDIT_NOTE_REASON_OTHER
            ),
        )
    ).credit_note
    beyond_note = await biller.refused(
        "CreateRefund",
        pb.CreateRefundRequest(invoice_id=invoice.id, amount=gbp(3001), credit_note_id=note.id),
    )
    assert beyond_note.reason == ErrorReason.ERROR_REASON_REFUND_EXCEEDS_PAID
    await biller(
        "CreateRefund",
        pb.CreateRefundRequest(invoice_id=invoice.id, amount=gbp(1000), credit_note_id=note.id),
    )
    refunded_note = await biller.refused("VoidCreditNote", pb.VoidCreditNoteRequest(id=note.id))
    assert refunded_note.reason == ErrorReason.ERROR_REASON_CREDIT_NOTE_STATE
    other = (
        await biller(
            "CreateCreditNote",
            pb.CreateCreditNoteRequest(
                invoice_id=invoice.id, amount=gbp(500), reason=pb.CREDIT_NOTE_REASON_DUPLICATE
            ),
        )
    ).credit_note
    voided = await biller("VoidCreditNote", pb.VoidCreditNoteRequest(id=other.id))
    assert voided.credit_note.status == pb.CREDIT_NOTE_STATUS_VOID
    twice = await biller.refused("VoidCreditNote", pb.VoidCreditNoteRequest(id=other.id))
    assert twice.reason == ErrorReason.ERROR_REASON_CREDIT_NOTE_STATE
    on_void = await biller.refused(
        "CreateRefund",
        pb.CreateRefundRequest(invoice_id=invoice.id, amount=gbp(1), credit_note_id=other.id),
    )
    assert on_void.reason == ErrorReason.ERROR_REASON_CREDIT_NOTE_STATE
    await biller(
        "CreateRefund", pb.CreateRefundRequest(invoice_id=invoice.id, amount=gbp(total - 1000))
    )
    all_back = await biller.refused(
        "CreateRefund", pb.CreateRefundRequest(invoice_id=invoice.id, amount=gbp(1))
    )
    assert all_back.reason == ErrorReason.ERROR_REASON_REFUND_EXCEEDS_PAID
    final = (await biller("GetInvoice", pb.GetInvoiceRequest(id=invoice.id))).invoice
    assert (final.amount_paid.minor_units, final.amount_refunded.minor_units) == (total, total)
    assert final.amount_credited.minor_units == 3000  # the void one no longer counts


# -- idempotency -----------------------------------------------------------------------------


async def test_an_idempotency_key_creates_once_and_refuses_another_request(biller: Biller) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [5000])
    request = pb.CreateCreditNoteRequest(
        invoice_id=invoice.id,
        amount=gbp(100),
        reason=pb.CREDIT_NOTE_REASON_OTHER,
        idempotency_key="k1",
    )
    first = await biller("CreateCreditNote", request)
    again = await biller("CreateCreditNote", request)
    assert again.credit_note.id == first.credit_note.id
    assert again.credit_note.number == first.credit_note.number
    changed = pb.CreateCreditNoteRequest()
    changed.CopyFrom(request)
    changed.amount.minor_units = 200
    reused = await biller.refused("CreateCreditNote", changed)
    assert reused.reason == ErrorReason.ERROR_REASON_IDEMPOTENCY_KEY_REUSED
    event = pb.RecordUsageRequest(event_id="same", meter="api.call", quantity=3)
    assert not (await biller("RecordUsage", event)).duplicate
    assert (await biller("RecordUsage", event)).duplicate
    other = await biller.refused(
        "RecordUsage", pb.RecordUsageRequest(event_id="same", meter="api.call", quantity=4)
    )
    assert other.reason == ErrorReason.ERROR_REASON_IDEMPOTENCY_KEY_REUSED


async def test_a_hundred_concurrent_identical_requests_create_one_credit_note(
    biller: Biller,
) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [9999])
    request = pb.CreateCreditNoteRequest(
        invoice_id=invoice.id,
        amount=gbp(250),
        reason=pb.CREDIT_NOTE_REASON_OTHER,
        idempotency_key="burst",
    )
    answers = await asyncio.gather(*(biller("CreateCreditNote", request) for _ in range(100)))
    assert len({answer.credit_note.id for answer in answers}) == 1
    listed = await biller("ListCreditNotes", pb.ListCreditNotesRequest(invoice_id=invoice.id))
    assert len(listed.credit_notes) == 1
    payments = await asyncio.gather(
        *(
            biller(
                "RecordPayment",
                pb.RecordPaymentRequest(
                    invoice_id=invoice.id, amount=gbp(10), idempotency_key="pay"
                ),
            )
            for _ in range(50)
        )
    )
    assert len({answer.payment.id for answer in payments}) == 1
    after = await biller("GetInvoice", pb.GetInvoiceRequest(id=invoice.id))
    assert after.invoice.amount_paid.minor_units == 10


# -- the store keeps documents immutable -----------------------------------------------------


async def test_finalized_documents_cannot_be_changed_in_the_store(
    biller: Biller, platform: Platform
) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [4200])
    note = (
        await biller(
            "CreateCreditNote",
            pb.CreateCreditNoteRequest(
                invoice_id=invoice.id, amount=gbp(10), reason=pb.CREDIT_NOTE_REASON_OTHER
            ),
        )
    ).credit_note
    hex_id = uuid.UUID(invoice.id)
    is_postgres = platform.database.engine.dialect.name == "postgresql"
    invoice_key = str(hex_id) if is_postgres else hex_id.hex
    note_key = str(uuid.UUID(note.id)) if is_postgres else uuid.UUID(note.id).hex
    for statement in (
        "UPDATE invoices SET total = total + 1, subtotal = subtotal + 1 WHERE id = :id",
        "DELETE FROM invoices WHERE id = :id",
        "UPDATE invoice_lines SET quantity = 7 WHERE invoice_id = :id",
        "DELETE FROM billing_ledger WHERE invoice_id = :id",
    ):
        with pytest.raises(Exception, match=r"immutable|append-only"):
            async with platform.database.engine.begin() as connection:
                await connection.execute(text(statement), {"id": invoice_key})
    with pytest.raises(Exception, match="only be voided"):
        async with platform.database.engine.begin() as connection:
            await connection.execute(
                text("UPDATE credit_notes SET total = 1, subtotal = 1, tax = 0 WHERE id = :id"),
                {"id": note_key},
            )
    unchanged = await biller("GetInvoice", pb.GetInvoiceRequest(id=invoice.id))
    assert unchanged.invoice.total.minor_units == invoice.total.minor_units


# -- signatures ------------------------------------------------------------------------------


async def test_documents_verify_offline_and_tampering_is_caught(
    biller: Biller, platform: Platform, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [1234, 5678])
    note = (
        await biller(
            "CreateCreditNote",
            pb.CreateCreditNoteRequest(
                invoice_id=invoice.id, amount=gbp(99), reason=pb.CREDIT_NOTE_REASON_OTHER
            ),
        )
    ).credit_note
    published = await biller.stub.GetJwks(pb.GetJwksRequest())  # public: no token needed
    keys = public_keys(MessageToDict(published)["keys"])
    assert set(keys) >= {invoice.signing_key_id, note.signing_key_id}
    document = verify(
        *signed_parts(
            {
                "invoice": {
                    "signedPayload": invoice.signed_payload,
                    "signature": invoice.signature,
                    "signingKeyId": invoice.signing_key_id,
                }
            }
        ),
        keys,
    )
    assert (document["number"], document["total"]) == (invoice.number, invoice.total.minor_units)
    assert [line["tax"] for line in document["lines"]] == [
        line.tax.minor_units for line in invoice.lines
    ]
    noted = verify(note.signed_payload, note.signature, note.signing_key_id, keys)
    assert (noted["invoice_number"], noted["total"]) == (invoice.number, 99)
    forged = invoice.signed_payload.replace(f'"total":{invoice.total.minor_units}', '"total":1')
    with pytest.raises(VerificationError):
        verify(forged, invoice.signature, invoice.signing_key_id, keys)
    exported = tmp_path / "invoice.json"
    exported.write_text(json.dumps({"invoice": MessageToDict(invoice)}))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": platform.servicer(BillingService).billing.signer.jwks()}))
    assert main(["billing", "verify", str(exported), "--jwks", str(jwks)]) == 0
    assert invoice.number in capsys.readouterr().out
    exported.write_text(
        json.dumps({"invoice": {**MessageToDict(invoice), "signedPayload": forged}})
    )
    assert main(["billing", "verify", str(exported), "--jwks", str(jwks)]) == 1


# -- tax -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_tax_outage_leaves_the_invoice_pending_and_it_is_issued_later(
    biller: Biller, platform: Platform
) -> None:
    await enrolled(biller)
    await biller(
        "RecordUsage", pb.RecordUsageRequest(event_id="t1", meter="api.call", quantity=700)
    )
    (draft,) = (await biller("ListInvoices", pb.ListInvoicesRequest())).invoices
    service = platform.servicer(BillingService)
    assert isinstance(service.tax, SandboxTaxProvider)  # no tax_url: the sandbox, in process
    service.tax.outage = True
    try:
        pending = (await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))).invoice
        assert pending.status == pb.INVOICE_STATUS_TAX_PENDING
        assert (pending.number, pending.tax.minor_units, pending.signature) == ("", 0, "")
        alerts = await biller(
            "ListBillingAlerts", pb.ListBillingAlertsRequest(kind=pb.BILLING_ALERT_KIND_TAX_PENDING)
        )
        assert [alert.details["invoice_id"] for alert in alerts.alerts] == [draft.id]
        await biller(
            "RecordUsage", pb.RecordUsageRequest(event_id="t2", meter="api.call", quantity=1)
        )
        invoices = (await biller("ListInvoices", pb.ListInvoicesRequest())).invoices
        assert len(invoices) == 2  # new usage went to a new draft, not the closed one
        still = await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))
        assert still.invoice.status == pb.INVOICE_STATUS_TAX_PENDING
    finally:
        service.tax.outage = False
    for _ in range(100):  # the background job retries with backoff
        again = (await biller("GetInvoice", pb.GetInvoiceRequest(id=draft.id))).invoice
        if again.status == pb.INVOICE_STATUS_FINALIZED:
            break
        await asyncio.sleep(0.1)
    assert again.status == pb.INVOICE_STATUS_FINALIZED
    assert (again.subtotal.minor_units, again.tax.minor_units) == (700, 140)


async def test_tax_modes_exemptions_and_currencies(biller: Biller) -> None:
    await enrolled(biller)
    tax = await biller(
        "CalculateTax",
        pb.CalculateTaxRequest(
            lines=[pb.TaxableLine(reference="a", amount=gbp(12000))],
            jurisdiction="GB",
            mode=pb.TAX_MODE_INCLUSIVE,
        ),
    )
    assert (tax.calculation.subtotal.minor_units, tax.calculation.tax.minor_units) == (10000, 2000)
    reverse = await biller(
        "CalculateTax",
        pb.CalculateTaxRequest(
            lines=[pb.TaxableLine(reference="a", amount=gbp(12000))],
            jurisdiction="DE",
            customer_tax_id="FR12345678901",
            mode=pb.TAX_MODE_EXCLUSIVE,
        ),
    )
    assert reverse.calculation.tax.minor_units == 0
    assert reverse.calculation.lines[0].exemption == "reverse_charge"
    yen = await biller(
        "CalculateTax",
        pb.CalculateTaxRequest(
            lines=[
                pb.TaxableLine(reference="a", amount=Money(minor_units=1005, currency_code="JPY"))
            ],
            jurisdiction="JP",
            mode=pb.TAX_MODE_EXCLUSIVE,
        ),
    )
    assert yen.calculation.tax == Money(minor_units=101, currency_code="JPY")  # 100.5 → 101
    unknown = await biller.refused(
        "CalculateTax",
        pb.CalculateTaxRequest(lines=[pb.TaxableLine(amount=gbp(1))], jurisdiction="XX"),
    )
    assert unknown.metadata["field"] == "jurisdiction"
    bad_currency = await biller.refused(
        "CalculateTax",
        pb.CalculateTaxRequest(
            lines=[pb.TaxableLine(amount=Money(minor_units=1, currency_code="ZZZ"))]
        ),
    )
    assert bad_currency.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_an_inclusive_invoice_keeps_its_gross_and_splits_the_tax(biller: Biller) -> None:
    await enrolled(biller, tax_mode=pb.TAX_MODE_INCLUSIVE)
    invoice = await invoice_with(biller, [12000, 999])
    assert [line.total.minor_units for line in invoice.lines] == [12000, 999]
    assert [line.tax.minor_units for line in invoice.lines] == [2000, 166]  # 999/1.2 = 832.5 → 833
    assert invoice.tax_details.mode == pb.TAX_MODE_INCLUSIVE


# -- caps, rollout, tenancy ------------------------------------------------------------------


async def test_a_spend_cap_refuses_usage_past_it_and_warns_at_80_and_100(biller: Biller) -> None:
    await enrolled(biller)
    await biller(
        "SetPrice",
        pb.SetPriceRequest(tenant_id=str(biller.tenant), meter="api.call", unit_price=gbp(10)),
    )
    await biller("SetSpendCap", pb.SetSpendCapRequest(cap=gbp(100)))
    accepted = 0
    refused = None
    for index in range(20):
        try:
            await biller(
                "RecordUsage",
                pb.RecordUsageRequest(event_id=f"cap{index}", meter="api.call", quantity=3),
            )
            accepted += 1
        except ConductorError as error:
            refused = error
            break
    assert refused is not None
    assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.reason == ErrorReason.ERROR_REASON_SPEND_CAP_REACHED
    assert accepted == 4  # 30, 60, 90, 120: the one event that crossed it, no more
    cap = (await biller("GetSpendCap", pb.GetSpendCapRequest())).spend_cap
    assert (cap.cap.minor_units, cap.spent.minor_units) == (100, 120)
    kinds = [
        alert.kind
        for alert in (await biller("ListBillingAlerts", pb.ListBillingAlertsRequest())).alerts
    ]
    assert sorted(kinds) == [
        pb.BILLING_ALERT_KIND_SPEND_CAP_80,
        pb.BILLING_ALERT_KIND_SPEND_CAP_100,
    ]
    wrong = await biller.refused(
        "SetSpendCap", pb.SetSpendCapRequest(cap=Money(minor_units=5, currency_code="USD"))
    )
    assert wrong.metadata["field"] == "cap.currency_code"


def alerts_of(tenant: uuid.UUID, kind: str = "") -> Any:
    """Selects the pushed billing alerts of `tenant` (of `kind`, if given)."""
    return lambda body: (
        body["kind"] == "billing_alert"
        and body["tenant_id"] == str(tenant)
        and body["alert_kind"] == (kind or body["alert_kind"])
    )


async def test_every_alert_raised_is_pushed_to_the_webhooks_with_its_facts(
    biller: Biller, webhook: Webhook
) -> None:
    await enrolled(biller)
    await biller(
        "SetPrice",
        pb.SetPriceRequest(tenant_id=str(biller.tenant), meter="api.call", unit_price=gbp(10)),
    )
    await biller("SetSpendCap", pb.SetSpendCapRequest(cap=gbp(100)))
    for index in range(4):  # 30, 60, 90 (crosses 80 %), 120 (crosses 100 %)
        await biller(
            "RecordUsage",
            pb.RecordUsageRequest(event_id=f"pushed{index}", meter="api.call", quantity=3),
        )
    listed = (await biller("ListBillingAlerts", pb.ListBillingAlertsRequest())).alerts
    raised = {pb.BillingAlertKind.Name(alert.kind): alert for alert in listed}
    pushed = {
        body["alert_kind"]: body for body in await webhook.received(2, alerts_of(biller.tenant))
    }
    for kind, spent in (("spend_cap_80", "90"), ("spend_cap_100", "120")):
        alert, body = raised[f"BILLING_ALERT_KIND_{kind.upper()}"], pushed[kind]
        assert body == {
            "id": body["id"],
            "recipient": "operators",
            "kind": "billing_alert",
            "tenant_id": str(biller.tenant),
            "alert_id": alert.id,
            "alert_kind": kind,
            "message": alert.message,
            "raised_at": rfc3339(alert.raised_at.ToDatetime(tzinfo=UTC)),
            "details": {"cap": "100", "spent": spent, "currency": "GBP"},
        }
        # The notification's own id, sent as the idempotency key of every attempt.
        assert webhook.idempotency_keys[webhook.bodies.index(body)] == body["id"] != alert.id


async def test_metered_work_that_crosses_the_cap_pushes_its_alerts_too(
    biller: Biller, platform: Platform, webhook: Webhook
) -> None:
    await enrolled(biller)
    await biller(
        "SetPrice",
        pb.SetPriceRequest(tenant_id=str(biller.tenant), meter="api.call", unit_price=gbp(10)),
    )
    await biller("SetSpendCap", pb.SetSpendCapRequest(cap=gbp(100)))
    metering = platform.component(Metering)
    metering.count(biller.tenant, "api.call", 10)  # 100: both thresholds in one flush
    await metering.flush()
    pushed = await webhook.received(2, alerts_of(biller.tenant))
    assert sorted((body["alert_kind"], body["details"]["spent"]) for body in pushed) == [
        ("spend_cap_100", "100"),
        ("spend_cap_80", "100"),
    ]


async def test_without_webhooks_alerts_are_stored_and_nothing_enters_the_outbox(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        serving(tmp_path / "var", database_url=database_url, services="billing") as quiet,
        new_biller(quiet) as biller,
    ):
        tenant = biller.tenant
        await enrolled(biller)
        await biller(
            "SetPrice",
            pb.SetPriceRequest(tenant_id=str(tenant), meter="api.call", unit_price=gbp(10)),
        )
        await biller("SetSpendCap", pb.SetSpendCapRequest(cap=gbp(5)))
        await biller(
            "RecordUsage", pb.RecordUsageRequest(event_id="e", meter="api.call", quantity=1)
        )
        raised = (await biller("ListBillingAlerts", pb.ListBillingAlertsRequest())).alerts
        assert len(raised) == 2  # 80 % and 100 % at once
        async with quiet.database.tenant_session(tenant) as session:
            outbox = await session.scalar(select(func.count()).select_from(NotificationRow))
        assert outbox == 0


async def test_metrics_report_the_seeds_billing_families(
    biller: Biller, platform: Platform
) -> None:
    await enrolled(biller)
    await biller(
        "SetPrice",
        pb.SetPriceRequest(tenant_id=str(biller.tenant), meter="api.call", unit_price=gbp(10)),
    )
    await biller("SetSpendCap", pb.SetSpendCapRequest(cap=gbp(5)))
    await biller("RecordUsage", pb.RecordUsageRequest(event_id="m1", meter="api.call", quantity=1))
    refused = await biller.refused(
        "RecordUsage", pb.RecordUsageRequest(event_id="m2", meter="api.call", quantity=1)
    )
    assert refused.reason == ErrorReason.ERROR_REASON_SPEND_CAP_REACHED
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        text = (await http.get("/metrics")).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["billing_cap_refusals_total"] >= 1
    for family in (
        "billing_variance_zscore",
        "billing_credit_notes_issued_total",
        "billing_reconciliation_drift_minor_units",
        "billing_tax_pending_invoices",
    ):
        assert f"# TYPE {family} " in text, family


async def test_the_rollout_holds_eight_ga_tenants_and_backs_out_in_one_call(
    biller: Biller, platform: Platform
) -> None:
    tenants = [str(uuid.uuid4()) for _ in range(9)]
    before = await biller("GetRollout", pb.GetRolloutRequest())
    assert before.max_ga_tenants == 8
    ga_now = sum(1 for tenant in before.tenants if tenant.stage == pb.ROLLOUT_STAGE_GA)
    for tenant in tenants[: 8 - ga_now]:
        await biller(
            "SetRollout", pb.SetRolloutRequest(tenant_id=tenant, stage=pb.ROLLOUT_STAGE_GA)
        )
    ninth = await biller.refused(
        "SetRollout", pb.SetRolloutRequest(tenant_id=tenants[8], stage=pb.ROLLOUT_STAGE_GA)
    )
    assert ninth.reason == ErrorReason.ERROR_REASON_ROLLOUT_GA_LIMIT
    operator_only = await biller.refused(
        "SetRollout",
        pb.SetRolloutRequest(backout=True),
        scopes=["billing.read", "billing.write", "admin.write"],
    )
    assert operator_only.code is grpc.StatusCode.PERMISSION_DENIED
    await enrolled(biller, stage=pb.ROLLOUT_STAGE_PILOT)
    backed = await biller("SetRollout", pb.SetRolloutRequest(backout=True))
    stages = {tenant.tenant_id: tenant.stage for tenant in backed.tenants}
    assert pb.ROLLOUT_STAGE_GA not in stages.values()
    assert stages[str(biller.tenant)] == pb.ROLLOUT_STAGE_PILOT  # pilots keep billing
    frozen = Biller(biller.stub, biller.minter, uuid.UUID(tenants[0]))
    await frozen("RecordUsage", pb.RecordUsageRequest(event_id="f1", meter="api.call", quantity=2))
    (draft,) = (await frozen("ListInvoices", pb.ListInvoicesRequest())).invoices
    refused = await frozen.refused("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))
    assert refused.reason == ErrorReason.ERROR_REASON_BILLING_FROZEN
    for tenant in tenants[:8]:  # leave no GA tenants for the next tests
        await biller(
            "SetRollout", pb.SetRolloutRequest(tenant_id=tenant, stage=pb.ROLLOUT_STAGE_FROZEN)
        )


async def test_every_rollout_change_is_kept_with_who_when_and_why(biller: Biller) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await biller(
        "SetRollout",
        pb.SetRolloutRequest(tenant_id=first, stage=pb.ROLLOUT_STAGE_PILOT, reason="pilot wave 1"),
    )
    await biller(
        "SetRollout", pb.SetRolloutRequest(tenant_id=first, stage=pb.ROLLOUT_STAGE_GA, reason="ga")
    )
    await biller("SetRollout", pb.SetRolloutRequest(tenant_id=first, stage=pb.ROLLOUT_STAGE_GA))
    await biller("SetRollout", pb.SetRolloutRequest(tenant_id=second, stage=pb.ROLLOUT_STAGE_GA))
    await biller("SetRollout", pb.SetRolloutRequest(backout=True, reason="drift alert"))
    mine = await biller("ListRolloutChanges", pb.ListRolloutChangesRequest(tenant_id=first))
    steps = [(c.from_stage, c.to_stage, c.reason, c.backout) for c in reversed(mine.changes)]
    assert steps == [  # the repeated GA is no change
        (pb.ROLLOUT_STAGE_UNSPECIFIED, pb.ROLLOUT_STAGE_PILOT, "pilot wave 1", False),
        (pb.ROLLOUT_STAGE_PILOT, pb.ROLLOUT_STAGE_GA, "ga", False),
        (pb.ROLLOUT_STAGE_GA, pb.ROLLOUT_STAGE_FROZEN, "drift alert", True),
    ]
    assert all(change.changed_by and change.changed_at.seconds for change in mine.changes)
    assert {change.tenant_id for change in mine.changes} == {first}
    paged, token, pages = [], "", 0
    while True:
        page = await biller(
            "ListRolloutChanges",
            pb.ListRolloutChangesRequest(page=PageRequest(page_size=2, page_token=token)),
        )
        paged += page.changes
        pages += 1
        token = page.page.next_page_token
        if not token:
            break
    ids = [change.id for change in paged]
    assert len(ids) == len(set(ids)) >= 5
    assert pages >= 3
    times = [change.changed_at.ToDatetime() for change in paged]
    assert times == sorted(times, reverse=True)
    backout = [c for c in paged if c.backout and c.tenant_id == second]
    assert len(backout) == 1
    tenant_only = await biller.refused(
        "ListRolloutChanges",
        pb.ListRolloutChangesRequest(),
        scopes=["billing.read", "billing.write", "admin.write"],
    )
    assert tenant_only.code is grpc.StatusCode.PERMISSION_DENIED
    bad = await biller.refused(
        "ListRolloutChanges", pb.ListRolloutChangesRequest(tenant_id="not-a-uuid")
    )
    assert bad.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_tenants_never_see_each_others_documents(biller: Biller) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [777])
    stranger = Biller(biller.stub, biller.minter, uuid.uuid4())
    hidden = await stranger.refused("GetInvoice", pb.GetInvoiceRequest(id=invoice.id))
    assert hidden.code is grpc.StatusCode.NOT_FOUND
    listed = await stranger("ListInvoices", pb.ListInvoicesRequest())
    assert not listed.invoices
    await enrolled(stranger)
    crossing = await stranger.refused(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=invoice.id, amount=gbp(1), reason=pb.CREDIT_NOTE_REASON_OTHER
        ),
    )
    assert crossing.code is grpc.StatusCode.NOT_FOUND


# -- reconciliation --------------------------------------------------------------------------


async def test_reconciliation_finds_no_drift_and_catches_a_stray_ledger_entry(
    biller: Biller, platform: Platform, webhook: Webhook
) -> None:
    await enrolled(biller)
    invoice = await invoice_with(biller, [3333, 1])
    for index in range(30):
        await biller(
            "RecordUsage",
            pb.RecordUsageRequest(event_id=f"r{index}", meter="graphql.operation", quantity=7),
        )
    await biller(
        "CreateCreditNote",
        pb.CreateCreditNoteRequest(
            invoice_id=invoice.id, amount=gbp(17), reason=pb.CREDIT_NOTE_REASON_OTHER
        ),
    )
    await biller("RecordPayment", pb.RecordPaymentRequest(invoice_id=invoice.id, amount=gbp(100)))
    await biller("CreateRefund", pb.CreateRefundRequest(invoice_id=invoice.id, amount=gbp(30)))
    today = (await biller("GetInvoice", pb.GetInvoiceRequest(id=invoice.id))).invoice.finalized_at
    day = today.ToDatetime().date().isoformat()
    report = (await biller("RunReconciliation", pb.RunReconciliationRequest(day=day))).report
    assert report.drift.minor_units == 0
    assert not report.alert
    assert report.ledger_total.minor_units == (
        report.metered_total.minor_units + report.documents_total.minor_units
    )
    is_postgres = platform.database.engine.dialect.name == "postgresql"
    async with platform.database.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO billing_ledger (id, tenant_id, kind, amount, currency, invoice_id,"
                " source_id, recorded_at) VALUES (:id, :tenant, 'usage', 2, 'GBP', :invoice,"
                " 'stray', :at)"
            ),
            {
                "id": str(uuid.uuid4()) if is_postgres else uuid.uuid4().hex,
                "tenant": str(biller.tenant) if is_postgres else biller.tenant.hex,
                "invoice": invoice.id if is_postgres else uuid.UUID(invoice.id).hex,
                "at": today.ToDatetime()
                if not is_postgres
                else today.ToDatetime().isoformat() + "+00:00",
            },
        )
    drifted = (await biller("RunReconciliation", pb.RunReconciliationRequest(day=day))).report
    assert (drifted.drift.minor_units, drifted.alert) == (2, True)
    stored = await biller("GetReconciliationReport", pb.GetReconciliationReportRequest(day=day))
    assert stored.report.drift.minor_units == 2
    alerts = await biller(
        "ListBillingAlerts",
        pb.ListBillingAlertsRequest(kind=pb.BILLING_ALERT_KIND_RECONCILIATION_DRIFT),
    )
    assert alerts.alerts[0].details["drift"] == "2"
    (pushed,) = await webhook.received(1, alerts_of(biller.tenant, "reconciliation_drift"))
    assert pushed["alert_id"] == alerts.alerts[0].id
    assert pushed["details"] == {"day": day, "drift": "2", "currency": "GBP"}


INT64_MAX = 2**63 - 1


async def test_amounts_and_quantities_past_their_bounds_are_refused_and_nothing_is_poisoned(
    biller: Biller,
) -> None:
    """Before bounds, 2^63-1 units went in (PostgreSQL) and every later call was INTERNAL,
    or 2^62 was finalized into a signed invoice (SQLite)."""
    await enrolled(biller)
    refusals = {
        "quantity": (
            "RecordUsage",
            pb.RecordUsageRequest(event_id="huge", meter="api.call", quantity=INT64_MAX),
        ),
        "unit_price.minor_units": (
            "SetPrice",
            pb.SetPriceRequest(
                tenant_id=str(biller.tenant), meter="api.call", unit_price=gbp(INT64_MAX)
            ),
        ),
        "lines[0].amount.minor_units": (
            "CalculateTax",
            pb.CalculateTaxRequest(lines=[pb.TaxableLine(amount=gbp(2**62))]),
        ),
        "per_quantity": (
            "SetPrice",
            pb.SetPriceRequest(
                tenant_id=str(biller.tenant),
                meter="api.call",
                unit_price=gbp(1),
                per_quantity=INT64_MAX,
            ),
        ),
        "cap.minor_units": ("SetSpendCap", pb.SetSpendCapRequest(cap=gbp(INT64_MAX))),
    }
    for field, (method, request) in refusals.items():
        error = await biller.refused(method, request)
        assert (error.code, error.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, field)
        assert str(INT64_MAX) not in error.details
    # Within each bound, but past them together: the period's charges may not overflow.
    most = 10**15
    await biller(
        "SetPrice",
        pb.SetPriceRequest(tenant_id=str(biller.tenant), meter="api.call", unit_price=gbp(most)),
    )
    for quantity in (10**12, 1):  # 10^15 rated is past what a document may rate (with its tax)
        error = await biller.refused(
            "RecordUsage",
            pb.RecordUsageRequest(event_id=f"big{quantity}", meter="api.call", quantity=quantity),
        )
        assert (error.code, error.metadata["field"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "quantity",
        )
    sums = pb.CalculateTaxRequest(lines=[pb.TaxableLine(amount=gbp(most)) for _ in range(2)])
    assert (await biller.refused("CalculateTax", sums)).metadata["field"] == "lines"
    # The tenant is not poisoned: ordinary usage, a finalized invoice, reconciliation work.
    await biller(
        "SetPrice",
        pb.SetPriceRequest(tenant_id=str(biller.tenant), meter="api.call", unit_price=gbp(7)),
    )
    await biller("RecordUsage", pb.RecordUsageRequest(event_id="ok", meter="api.call", quantity=3))
    drafts = await biller("ListInvoices", pb.ListInvoicesRequest(status=pb.INVOICE_STATUS_DRAFT))
    (draft,) = drafts.invoices
    finalized = await biller("FinalizeInvoice", pb.FinalizeInvoiceRequest(id=draft.id))
    assert finalized.invoice.subtotal.minor_units == 21
    report = await biller("RunReconciliation", pb.RunReconciliationRequest())
    assert report.report.day
