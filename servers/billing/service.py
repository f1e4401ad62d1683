"""The BillingService servicer: translates messages and calls the billing modules, nothing else."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, date, timedelta
from typing import Any

from intelgraph.billing.v1 import billing_service_pb2 as pb
from intelgraph.billing.v1 import billing_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageResponse
from sqlalchemy import select, tuple_

from core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    quoted,
    uuid_field,
)
from core.pagination import TIME_AND_ID, Page
from interceptors import current_principal
from servers.billing import messages, reconciliation, rollout, usage
from servers.billing.adjustments import (
    CreditRequest,
    balance_of,
    create_credit_note,
    create_refund,
    credit_notes_of,
    preview_credit_note,
    record_payment,
    void_credit_note,
)
from servers.billing.documents import DocumentSigner
from servers.billing.invoices import Billing, finalize, finalize_due, invoice_of
from servers.billing.metering import Metering
from servers.billing.money import MAX_MINOR_UNITS, within_money_bound
from servers.billing.money import currency as iso_currency
from servers.billing.pricing import PRICE_BOOK, price_book, profile_of
from servers.billing.store import (
    AlertRow,
    BillingProfileRow,
    InvoiceRow,
    PriceRow,
    ReconciliationRow,
    SpendCapRow,
)
from servers.billing.tax import LineToTax, SandboxTaxProvider, TaxUnavailable, UnknownJurisdiction
from servers.jobs import every_under_lease
from servers.runtime import PlatformServicer, Runtime, ServiceDefinition


def _page(request: Any, **filters: Any) -> Page:
    return Page.from_request(
        request.page.page_size, request.page.page_token, filters=filters, keyset=TIME_AND_ID
    )


#: The first day billing can have data for.
FIRST_DAY = date(1970, 1, 1)


def _day(value: str, field: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be an ISO 8601 day (2026-05-27)", field=field
        ) from None
    if day < FIRST_DAY:
        raise InvalidArgument(f"{field} must not be before {FIRST_DAY.isoformat()}", field=field)
    return day


class BillingService(PlatformServicer, billing_service_pb2_grpc.BillingServiceServicer):
    """Metered usage, signed invoices, credit notes, refunds, tax, reconciliation, guards."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.tax = SandboxTaxProvider()
        self.billing = Billing(
            runtime.database,
            self.tax,
            DocumentSigner(runtime.settings.document_keys_dir),
            runtime.clock,
        )

    def background_jobs(self) -> list[Callable[[], Coroutine[Any, Any, Any]]]:
        """Finalization of what is due and tax retries; daily reconciliation (one replica each)."""
        database = self.runtime.database
        return [
            functools.partial(
                every_under_lease, database, "billing.finalize", 5.0, self._finalize_due
            ),
            functools.partial(
                every_under_lease, database, "billing.reconcile", 3600.0, self._reconcile_yesterday
            ),
        ]

    async def _finalize_due(self) -> int:
        return await finalize_due(self.billing, self.runtime.clock(), self._invoices_changed)

    async def _invoices_changed(self, tenant: uuid.UUID) -> None:
        await self.runtime.changed(
            tenant, "intelgraph.billing.v1.Invoice", "intelgraph.billing.v1.BillingAlert"
        )

    async def _reconcile_yesterday(self) -> int:
        now = self.runtime.clock()
        return await reconciliation.reconcile_all(
            self.runtime.database, (now - timedelta(days=1)).date(), now
        )

    async def _balance(self, invoice_id: uuid.UUID) -> pb.Invoice:
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            return messages.invoice(
                await balance_of(session, await invoice_of(session, invoice_id))
            )

    # -- usage and invoices ------------------------------------------------------------

    async def RecordUsage(
        self, request: pb.RecordUsageRequest, context: Any
    ) -> pb.RecordUsageResponse:
        """Record one usage event (idempotent by event id)."""
        tenant = current_principal().tenant
        now = self.runtime.clock()
        occurred = (
            request.occurred_at.ToDatetime(tzinfo=UTC) if request.HasField("occurred_at") else now
        )
        async with self.runtime.database.tenant_session(tenant) as session:
            recorded = await usage.record_usage(
                session, tenant, request.event_id, request.meter, request.quantity, occurred, now
            )
            return pb.RecordUsageResponse(
                event=messages.usage_event(recorded.event), duplicate=recorded.duplicate
            )

    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: Any
    ) -> pb.GetInvoiceResponse:
        """One invoice with what was paid, credited and refunded."""
        return pb.GetInvoiceResponse(invoice=await self._balance(uuid_field(request.id, "id")))

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: Any
    ) -> pb.ListInvoicesResponse:
        """The tenant's invoices, newest period first."""
        status = {v: k for k, v in messages.INVOICE_STATUS.items()}.get(request.status, "")
        page = _page(request, status=status)
        query = select(InvoiceRow)
        if status:
            query = query.where(InvoiceRow.status == status)
        if page.after is not None:
            query = query.where(tuple_(InvoiceRow.period_start, InvoiceRow.id) < page.after)
        query = query.order_by(InvoiceRow.period_start.desc(), InvoiceRow.id.desc())
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            rows = list((await session.execute(query.limit(page.size + 1))).scalars())
            token = page.next_token(rows, lambda row: (row.period_start, row.id))
            invoices = [
                messages.invoice(await balance_of(session, row)) for row in rows[: page.size]
            ]
        return pb.ListInvoicesResponse(invoices=invoices, page=PageResponse(next_page_token=token))

    async def FinalizeInvoice(
        self, request: pb.FinalizeInvoiceRequest, context: Any
    ) -> pb.FinalizeInvoiceResponse:
        """Tax, number, sign and freeze a draft (tax_pending when the provider is down).

        Finalizing is idempotent by nature: a finalized invoice is returned as it is.
        """
        invoice_id = uuid_field(request.id, "id")
        await finalize(self.billing, current_principal().tenant, invoice_id)
        return pb.FinalizeInvoiceResponse(invoice=await self._balance(invoice_id))

    # -- credit notes, payments, refunds -------------------------------------------------

    def _credit_request(self, request: Any) -> CreditRequest:
        lines = []
        for index, line in enumerate(request.lines):
            amount, code = messages.amount_in(line.amount, f"lines[{index}].amount")
            lines.append(
                (
                    str(uuid_field(line.invoice_line_id, f"lines[{index}].invoice_line_id")),
                    amount,
                    code,
                )
            )
        amount, code = (0, "")
        if not lines:
            if not request.HasField("amount"):
                raise InvalidArgument("credit lines, or an amount", field="amount")
            amount, code = messages.amount_in(request.amount, "amount")
        codes = {line_code for _, _, line_code in lines} | ({code} if code else set())
        if len(codes) > 1:
            raise InvalidArgument("every amount must be in one currency", field="lines")
        reason = messages.REASONS.get(request.reason)
        if reason is None:
            raise InvalidArgument(
                "reason must be one of the CreditNoteReason values", field="reason"
            )
        return CreditRequest(
            uuid_field(request.invoice_id, "invoice_id"),
            tuple((line_id, value) for line_id, value, _ in lines),
            amount,
            codes.pop() if codes else "",
            reason,
            request.memo,
        )

    async def PreviewCreditNote(
        self, request: pb.PreviewCreditNoteRequest, context: Any
    ) -> pb.PreviewCreditNoteResponse:
        """The credit note as it would be issued (no id, number or signature)."""
        preview = await preview_credit_note(
            self.billing, current_principal().tenant, self._credit_request(request)
        )
        return pb.PreviewCreditNoteResponse(credit_note=messages.credit_note(preview))

    async def CreateCreditNote(
        self, request: pb.CreateCreditNoteRequest, context: Any
    ) -> pb.CreateCreditNoteResponse:
        """Issue a signed, numbered credit note."""
        issued = await create_credit_note(
            self.billing,
            current_principal().tenant,
            self._credit_request(request),
            request.idempotency_key,
        )
        return pb.CreateCreditNoteResponse(credit_note=messages.credit_note(issued))

    async def VoidCreditNote(
        self, request: pb.VoidCreditNoteRequest, context: Any
    ) -> pb.VoidCreditNoteResponse:
        """Void an issued credit note (not once refunds paid it out)."""
        voided = await void_credit_note(
            self.billing,
            current_principal().tenant,
            uuid_field(request.id, "id"),
            request.idempotency_key,
        )
        return pb.VoidCreditNoteResponse(credit_note=messages.credit_note(voided))

    async def ListCreditNotes(
        self, request: pb.ListCreditNotesRequest, context: Any
    ) -> pb.ListCreditNotesResponse:
        """The invoice's credit notes, oldest first (one page: an invoice has few)."""
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            notes = await credit_notes_of(session, uuid_field(request.invoice_id, "invoice_id"))
        return pb.ListCreditNotesResponse(
            credit_notes=[messages.credit_note(note) for note in notes], page=PageResponse()
        )

    async def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: Any
    ) -> pb.RecordPaymentResponse:
        """Record money received against a finalized invoice."""
        amount, code = messages.amount_in(request.amount, "amount")
        payment = await record_payment(
            self.billing,
            current_principal().tenant,
            uuid_field(request.invoice_id, "invoice_id"),
            amount,
            code,
            request.reference,
            request.idempotency_key,
        )
        return pb.RecordPaymentResponse(payment=messages.payment(payment))

    async def CreateRefund(
        self, request: pb.CreateRefundRequest, context: Any
    ) -> pb.CreateRefundResponse:
        """Pay money back on an invoice, optionally against a credit note."""
        amount, code = messages.amount_in(request.amount, "amount")
        refund = await create_refund(
            self.billing,
            current_principal().tenant,
            uuid_field(request.invoice_id, "invoice_id"),
            amount,
            code,
            uuid_field(request.credit_note_id, "credit_note_id")
            if request.credit_note_id
            else None,
            request.memo,
            request.idempotency_key,
        )
        return pb.CreateRefundResponse(refund=messages.refund(refund))

    # -- tax ------------------------------------------------------------------------------

    async def CalculateTax(
        self, request: pb.CalculateTaxRequest, context: Any
    ) -> pb.CalculateTaxResponse:
        """Tax lines through the sandbox provider; nothing is recorded."""
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            profile = await profile_of(session, tenant)
        lines, codes = [], set()
        for index, line in enumerate(request.lines):
            amount, code = messages.amount_in(line.amount, f"lines[{index}].amount")
            codes.add(code)
            lines.append(LineToTax(line.reference or str(index), amount, line.tax_code))
        if len(codes) > 1:
            raise InvalidArgument("every amount must be in one currency", field="lines")
        if not within_money_bound(sum(line.amount for line in lines)):
            raise InvalidArgument(
                f"the lines add up to more than {MAX_MINOR_UNITS} minor units", field="lines"
            )
        mode = messages.TAX_MODES.get(request.mode, profile.tax_mode)
        try:
            calculation = await self.tax.calculate(
                lines,
                jurisdiction=request.jurisdiction or profile.jurisdiction,
                customer_tax_id=request.customer_tax_id,
                mode="inclusive" if mode == "inclusive" else "exclusive",
                currency=codes.pop() if codes else profile.currency,
            )
        except UnknownJurisdiction as error:
            raise InvalidArgument(str(error), field="jurisdiction") from None
        except TaxUnavailable as error:
            raise Unavailable(str(error)) from None
        code = request.lines[0].amount.currency_code if request.lines else profile.currency
        return pb.CalculateTaxResponse(calculation=messages.tax_calculation(calculation, code))

    # -- reconciliation, guards ----------------------------------------------------------

    async def RunReconciliation(
        self, request: pb.RunReconciliationRequest, context: Any
    ) -> pb.RunReconciliationResponse:
        """Reconcile one day of the caller's tenant now (yesterday by default)."""
        now = self.runtime.clock()
        day = _day(request.day, "day") if request.day else (now - timedelta(days=1)).date()
        if day > now.date():
            raise InvalidArgument("a day in the future cannot be reconciled", field="day")
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant) as session:
            row = await reconciliation.reconcile(session, tenant, day, now)
            return pb.RunReconciliationResponse(report=messages.report(row))

    async def GetReconciliationReport(
        self, request: pb.GetReconciliationReportRequest, context: Any
    ) -> pb.GetReconciliationReportResponse:
        """The stored report of one day."""
        day = _day(request.day, "day").isoformat()
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            row = (
                await session.execute(select(ReconciliationRow).where(ReconciliationRow.day == day))
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no reconciliation report for {day}")
            return pb.GetReconciliationReportResponse(report=messages.report(row))

    async def SetSpendCap(
        self, request: pb.SetSpendCapRequest, context: Any
    ) -> pb.SetSpendCapResponse:
        """Set (or, with zero, remove) the tenant's cap on a period's rated usage."""
        amount, code = messages.amount_in(request.cap, "cap")
        tenant = current_principal().tenant
        now = self.runtime.clock()
        async with self.runtime.database.tenant_session(tenant) as session:
            row = await usage.set_spend_cap(session, tenant, amount, code, now)
            spent = await usage.spent(session, now)
            return pb.SetSpendCapResponse(spend_cap=messages.spend_cap(row, spent, code))

    async def GetSpendCap(
        self, request: pb.GetSpendCapRequest, context: Any
    ) -> pb.GetSpendCapResponse:
        """The cap and what the current period has spent."""
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            row = await session.get(SpendCapRow, tenant)
            profile = await profile_of(session, tenant)
            spent = await usage.spent(session, self.runtime.clock())
        return pb.GetSpendCapResponse(spend_cap=messages.spend_cap(row, spent, profile.currency))

    async def GetRollout(
        self, request: pb.GetRolloutRequest, context: Any
    ) -> pb.GetRolloutResponse:
        """Which tenants are pilot, GA or frozen."""
        async with self.runtime.database.platform_session(readonly=True) as session:
            rows = await rollout.rollout(session)
        return pb.GetRolloutResponse(
            tenants=[messages.rollout(row) for row in rows], max_ga_tenants=rollout.MAX_GA_TENANTS
        )

    async def SetRollout(
        self, request: pb.SetRolloutRequest, context: Any
    ) -> pb.SetRolloutResponse:
        """Move a tenant between stages, or back out (freeze every GA tenant)."""
        actor, now = current_principal().subject, self.runtime.clock()
        async with self.runtime.database.platform_session() as session:
            if request.backout:
                rows = await rollout.back_out(session, actor, now)
            else:
                stage = messages.STAGES.get(request.stage)
                if stage is None:
                    raise InvalidArgument("stage must be pilot, GA or frozen", field="stage")
                tenant = uuid_field(request.tenant_id, "tenant_id")
                rows = await rollout.set_stage(session, tenant, stage, actor, now)
            return pb.SetRolloutResponse(tenants=[messages.rollout(row) for row in rows])

    async def ListBillingAlerts(
        self, request: pb.ListBillingAlertsRequest, context: Any
    ) -> pb.ListBillingAlertsResponse:
        """The tenant's billing alerts, newest first."""
        kind = messages.ALERT_KINDS.get(request.kind, "")
        page = _page(request, kind=kind)
        query = select(AlertRow)
        if kind:
            query = query.where(AlertRow.kind == kind)
        if page.after is not None:
            query = query.where(tuple_(AlertRow.raised_at, AlertRow.id) < page.after)
        query = query.order_by(AlertRow.raised_at.desc(), AlertRow.id.desc()).limit(page.size + 1)
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            rows = list((await session.execute(query)).scalars())
        token = page.next_token(rows, lambda row: (row.raised_at, row.id))
        return pb.ListBillingAlertsResponse(
            alerts=[messages.alert(row) for row in rows[: page.size]],
            page=PageResponse(next_page_token=token),
        )

    # -- profile and prices ----------------------------------------------------------------

    async def GetBillingProfile(
        self, request: pb.GetBillingProfileRequest, context: Any
    ) -> pb.GetBillingProfileResponse:
        """The tenant's currency and tax facts (the defaults until set)."""
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            return pb.GetBillingProfileResponse(
                profile=messages.profile(await profile_of(session, tenant))
            )

    async def SetBillingProfile(
        self, request: pb.SetBillingProfileRequest, context: Any
    ) -> pb.SetBillingProfileResponse:
        """Set the tenant's currency (fixed once invoiced), jurisdiction, tax id and mode."""
        wanted = request.profile
        try:
            code = iso_currency(wanted.currency_code)
        except ValueError as error:
            raise InvalidArgument(str(error), field="profile.currency_code") from None
        mode = messages.TAX_MODES.get(wanted.tax_mode)
        if mode is None:
            raise InvalidArgument(
                "tax_mode must be exclusive or inclusive", field="profile.tax_mode"
            )
        try:
            self.tax.rate(wanted.jurisdiction)
        except UnknownJurisdiction as error:
            raise InvalidArgument(str(error), field="profile.jurisdiction") from None
        tenant, now = current_principal().tenant, self.runtime.clock()
        async with self.runtime.database.tenant_session(tenant) as session:
            billed = (
                await session.execute(
                    select(InvoiceRow)
                    .where((InvoiceRow.status != "draft") | (InvoiceRow.subtotal != 0))
                    .limit(1)
                )
            ).scalar_one_or_none()
            if billed is not None and billed.currency != code:
                raise FailedPrecondition(
                    f"the tenant has been invoiced in {billed.currency}; its currency is fixed",
                    metadata={"currency": billed.currency},
                )
            row = await session.get(BillingProfileRow, tenant)
            if row is None:
                row = BillingProfileRow(tenant_id=tenant)
                session.add(row)
            row.currency, row.jurisdiction, row.tax_id = code, wanted.jurisdiction, wanted.tax_id
            row.tax_mode, row.updated_at = mode, now
            for draft in (
                await session.execute(select(InvoiceRow).where(InvoiceRow.status == "draft"))
            ).scalars():
                if draft.subtotal == 0:
                    draft.currency, draft.tax_mode = code, mode
            await session.flush()
            return pb.SetBillingProfileResponse(profile=messages.profile(row))

    async def GetPriceBook(
        self, request: pb.GetPriceBookRequest, context: Any
    ) -> pb.GetPriceBookResponse:
        """Every meter's price for the tenant, in its currency."""
        tenant = current_principal().tenant
        async with self.runtime.database.tenant_session(tenant, readonly=True) as session:
            profile = await profile_of(session, tenant)
            prices = await price_book(session, profile.currency)
        return pb.GetPriceBookResponse(prices=[messages.price(price) for price in prices])

    async def SetPrice(self, request: pb.SetPriceRequest, context: Any) -> pb.SetPriceResponse:
        """Set or clear one tenant's price for a meter; lines already open keep their price."""
        tenant = uuid_field(request.tenant_id, "tenant_id")
        if request.meter not in PRICE_BOOK:
            raise InvalidArgument(
                f"no meter {quoted(request.meter)} in the price book", field="meter"
            )
        now = self.runtime.clock()
        async with self.runtime.database.tenant_session(tenant) as session:
            existing = await session.get(PriceRow, (tenant, request.meter))
            profile = await profile_of(session, tenant)
            if request.clear:
                if existing is not None:
                    await session.delete(existing)
            else:
                amount, code = messages.amount_in(request.unit_price, "unit_price")
                if amount < 0:
                    raise InvalidArgument("prices are not negative", field="unit_price.minor_units")
                if code != profile.currency:
                    raise InvalidArgument(
                        f"the tenant bills in {profile.currency}", field="unit_price.currency_code"
                    )
                per = request.per_quantity or 1
                if per < 1:
                    raise InvalidArgument("per_quantity must be at least 1", field="per_quantity")
                if existing is None:
                    existing = PriceRow(tenant_id=tenant, meter=request.meter)
                    session.add(existing)
                existing.unit_price, existing.currency = amount, code
                existing.per_quantity, existing.updated_at = per, now
            await session.flush()
            for price in await price_book(session, profile.currency):
                if price.meter == request.meter:
                    return pb.SetPriceResponse(price=messages.price(price))
        return pb.SetPriceResponse()


SERVICE = ServiceDefinition(
    component=Metering.of,
    name="billing",
    descriptor=pb.DESCRIPTOR.services_by_name["BillingService"],
    servicer_class=BillingService,
    add_to_server=billing_service_pb2_grpc.add_BillingServiceServicer_to_server,
    capability="billing GA: invoices, credit notes, refunds, tax, reconciliation (issue #7)",
)
