"""The BillingService servicer: translates messages and calls the use cases, nothing else."""

from __future__ import annotations

import functools
import uuid
from datetime import date, timedelta

import grpc
from intelgraph.billing.v1 import billing_service_pb2 as pb
from intelgraph.billing.v1 import billing_service_pb2_grpc
from intelgraph.common.v1.pagination_pb2 import PageResponse

from core.errors import InvalidArgument, uuid_field
from core.interfaces import CacheInvalidation, Notifications, UsageMeter
from core.pagination import NAME, TIME_AND_ID, Page
from core.times import optional_instant
from interceptors import current_principal
from servers.billing import (
    balances,
    budgets,
    credit_notes,
    messages,
    profiles,
    reconciliation,
    records,
    refunds,
    rollout,
    usage,
)
from servers.billing.credit_notes import CreditRequest
from servers.billing.documents import DocumentSigner, published_keys
from servers.billing.invoices import Billing, finalize, finalize_due
from servers.billing.metering import Metering
from servers.billing.tax import HttpTaxProvider, LineToTax, SandboxTaxProvider, TaxProvider
from servers.jobs import every_under_lease
from servers.runtime import Job, PlatformServicer, Runtime, ServiceDefinition

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
        settings = runtime.settings
        #: The remote tax API of `tax_url`; unset, the sandbox rate table in process.
        self.tax: TaxProvider = (
            HttpTaxProvider(settings.tax_url, timeout_s=settings.tax_timeout)
            if settings.tax_url
            else SandboxTaxProvider()
        )
        self.billing = Billing(
            runtime.database,
            self.tax,
            DocumentSigner(runtime.settings.document_keys_dir),
            runtime.clock,
            runtime.notifications,
        )

    def background_jobs(self) -> list[Job]:
        """Finalization of what is due and tax retries; daily reconciliation (one replica each)."""
        database = self.runtime.database
        return [
            self._finalize_until_stopped,
            functools.partial(
                every_under_lease, database, "billing.reconcile", 3600.0, self._reconcile_yesterday
            ),
        ]

    async def _finalize_until_stopped(self) -> None:
        try:
            await every_under_lease(
                self.runtime.database, "billing.finalize", 5.0, self._finalize_due
            )
        finally:
            # The provider's last user: calls have ended before jobs are cancelled, and a
            # cancelled job finishes the run under way first.
            await self.tax.aclose()

    async def _finalize_due(self) -> int:
        return await finalize_due(self.billing, self.runtime.clock(), self._invoices_changed)

    async def _invoices_changed(self, tenant: uuid.UUID) -> None:
        await self.runtime.changed(
            tenant, "intelgraph.billing.v1.Invoice", "intelgraph.billing.v1.BillingAlert"
        )

    async def _reconcile_yesterday(self) -> int:
        now = self.runtime.clock()
        return await reconciliation.reconcile_all(
            self.runtime.database, (now - timedelta(days=1)).date(), now, self.billing.notifications
        )

    async def _balance(self, invoice_id: uuid.UUID) -> pb.Invoice:
        tenant = current_principal().tenant
        return messages.invoice(
            await balances.invoice_balance(self.runtime.database, tenant, invoice_id)
        )

    # -- usage and invoices ------------------------------------------------------------

    async def RecordUsage(
        self,
        request: pb.RecordUsageRequest,
        context: grpc.aio.ServicerContext[pb.RecordUsageRequest, pb.RecordUsageResponse],
    ) -> pb.RecordUsageResponse:
        """Record one usage event (idempotent by event id)."""
        tenant = current_principal().tenant
        now = self.runtime.clock()
        occurred = optional_instant(request, "occurred_at") or now
        recorded = await usage.record(
            self.runtime.database,
            tenant,
            request.event_id,
            request.meter,
            request.quantity,
            occurred,
            now,
            notifications=self.billing.notifications,
        )
        return pb.RecordUsageResponse(
            event=messages.usage_event(recorded.event), duplicate=recorded.duplicate
        )

    async def GetInvoice(
        self,
        request: pb.GetInvoiceRequest,
        context: grpc.aio.ServicerContext[pb.GetInvoiceRequest, pb.GetInvoiceResponse],
    ) -> pb.GetInvoiceResponse:
        """One invoice with what was paid, credited and refunded."""
        return pb.GetInvoiceResponse(invoice=await self._balance(uuid_field(request.id, "id")))

    async def ListInvoices(
        self,
        request: pb.ListInvoicesRequest,
        context: grpc.aio.ServicerContext[pb.ListInvoicesRequest, pb.ListInvoicesResponse],
    ) -> pb.ListInvoicesResponse:
        """The tenant's invoices, newest period first."""
        status = {v: k for k, v in messages.INVOICE_STATUS.items()}.get(request.status, "")
        page = Page.of(request, TIME_AND_ID, status=status)
        found, token = await balances.list_invoices(
            self.runtime.database, current_principal().tenant, status, page
        )
        return pb.ListInvoicesResponse(
            invoices=[messages.invoice(balance) for balance in found],
            page=PageResponse(next_page_token=token),
        )

    async def FinalizeInvoice(
        self,
        request: pb.FinalizeInvoiceRequest,
        context: grpc.aio.ServicerContext[pb.FinalizeInvoiceRequest, pb.FinalizeInvoiceResponse],
    ) -> pb.FinalizeInvoiceResponse:
        """Tax, number, sign and freeze a draft (tax_pending when the provider is down).

        Finalizing is idempotent by nature: a finalized invoice is returned as it is.
        """
        invoice_id = uuid_field(request.id, "id")
        await finalize(self.billing, current_principal().tenant, invoice_id)
        return pb.FinalizeInvoiceResponse(invoice=await self._balance(invoice_id))

    # -- credit notes, payments, refunds -------------------------------------------------

    def _credit_request(
        self, request: pb.PreviewCreditNoteRequest | pb.CreateCreditNoteRequest
    ) -> CreditRequest:
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
        self,
        request: pb.PreviewCreditNoteRequest,
        context: grpc.aio.ServicerContext[
            pb.PreviewCreditNoteRequest, pb.PreviewCreditNoteResponse
        ],
    ) -> pb.PreviewCreditNoteResponse:
        """The credit note as it would be issued (no id, number or signature)."""
        preview = await credit_notes.preview_credit_note(
            self.billing, current_principal().tenant, self._credit_request(request)
        )
        return pb.PreviewCreditNoteResponse(credit_note=messages.credit_note(preview))

    async def CreateCreditNote(
        self,
        request: pb.CreateCreditNoteRequest,
        context: grpc.aio.ServicerContext[pb.CreateCreditNoteRequest, pb.CreateCreditNoteResponse],
    ) -> pb.CreateCreditNoteResponse:
        """Issue a signed, numbered credit note."""
        issued = await credit_notes.create_credit_note(
            self.billing,
            current_principal().tenant,
            self._credit_request(request),
            request.idempotency_key,
        )
        return pb.CreateCreditNoteResponse(credit_note=messages.credit_note(issued))

    async def VoidCreditNote(
        self,
        request: pb.VoidCreditNoteRequest,
        context: grpc.aio.ServicerContext[pb.VoidCreditNoteRequest, pb.VoidCreditNoteResponse],
    ) -> pb.VoidCreditNoteResponse:
        """Void an issued credit note (not once refunds paid it out)."""
        voided = await credit_notes.void_credit_note(
            self.billing,
            current_principal().tenant,
            uuid_field(request.id, "id"),
            request.idempotency_key,
        )
        return pb.VoidCreditNoteResponse(credit_note=messages.credit_note(voided))

    async def ListCreditNotes(
        self,
        request: pb.ListCreditNotesRequest,
        context: grpc.aio.ServicerContext[pb.ListCreditNotesRequest, pb.ListCreditNotesResponse],
    ) -> pb.ListCreditNotesResponse:
        """The invoice's credit notes, oldest first (one page: an invoice has few)."""
        tenant = current_principal().tenant
        notes = await credit_notes.list_credit_notes(
            self.runtime.database, tenant, uuid_field(request.invoice_id, "invoice_id")
        )
        return pb.ListCreditNotesResponse(
            credit_notes=[messages.credit_note(note) for note in notes], page=PageResponse()
        )

    async def RecordPayment(
        self,
        request: pb.RecordPaymentRequest,
        context: grpc.aio.ServicerContext[pb.RecordPaymentRequest, pb.RecordPaymentResponse],
    ) -> pb.RecordPaymentResponse:
        """Record money received against a finalized invoice."""
        amount, code = messages.amount_in(request.amount, "amount")
        payment = await refunds.record_payment(
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
        self,
        request: pb.CreateRefundRequest,
        context: grpc.aio.ServicerContext[pb.CreateRefundRequest, pb.CreateRefundResponse],
    ) -> pb.CreateRefundResponse:
        """Pay money back on an invoice, optionally against a credit note."""
        amount, code = messages.amount_in(request.amount, "amount")
        refund = await refunds.create_refund(
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
        self,
        request: pb.CalculateTaxRequest,
        context: grpc.aio.ServicerContext[pb.CalculateTaxRequest, pb.CalculateTaxResponse],
    ) -> pb.CalculateTaxResponse:
        """Tax lines through the sandbox provider; nothing is recorded."""
        lines, codes = [], set()
        for index, line in enumerate(request.lines):
            amount, code = messages.amount_in(line.amount, f"lines[{index}].amount")
            codes.add(code)
            lines.append(LineToTax(line.reference or str(index), amount, line.tax_code))
        calculation, profile = await profiles.calculate_tax(
            self.runtime.database,
            self.tax,
            current_principal().tenant,
            lines,
            codes,
            messages.TAX_MODES.get(request.mode),
            request.jurisdiction,
            request.customer_tax_id,
        )
        code = request.lines[0].amount.currency_code if request.lines else profile.currency
        return pb.CalculateTaxResponse(calculation=messages.tax_calculation(calculation, code))

    # -- reconciliation, guards ----------------------------------------------------------

    async def RunReconciliation(
        self,
        request: pb.RunReconciliationRequest,
        context: grpc.aio.ServicerContext[
            pb.RunReconciliationRequest, pb.RunReconciliationResponse
        ],
    ) -> pb.RunReconciliationResponse:
        """Reconcile one day of the caller's tenant now (yesterday by default)."""
        now = self.runtime.clock()
        day = _day(request.day, "day") if request.day else (now - timedelta(days=1)).date()
        if day > now.date():
            raise InvalidArgument("a day in the future cannot be reconciled", field="day")
        tenant = current_principal().tenant
        row = await reconciliation.run(
            self.runtime.database, tenant, day, now, self.billing.notifications
        )
        return pb.RunReconciliationResponse(report=messages.report(row))

    async def GetReconciliationReport(
        self,
        request: pb.GetReconciliationReportRequest,
        context: grpc.aio.ServicerContext[
            pb.GetReconciliationReportRequest, pb.GetReconciliationReportResponse
        ],
    ) -> pb.GetReconciliationReportResponse:
        """The stored report of one day."""
        day = _day(request.day, "day").isoformat()
        tenant = current_principal().tenant
        row = await reconciliation.report_of(self.runtime.database, tenant, day)
        return pb.GetReconciliationReportResponse(report=messages.report(row))

    async def SetSpendCap(
        self,
        request: pb.SetSpendCapRequest,
        context: grpc.aio.ServicerContext[pb.SetSpendCapRequest, pb.SetSpendCapResponse],
    ) -> pb.SetSpendCapResponse:
        """Set (or, with zero, remove) the tenant's cap on a period's rated usage."""
        amount, code = messages.amount_in(request.cap, "cap")
        tenant = current_principal().tenant
        now = self.runtime.clock()
        row, spent = await usage.set_cap(self.runtime.database, tenant, amount, code, now)
        return pb.SetSpendCapResponse(spend_cap=messages.spend_cap(row, spent, code))

    async def GetSpendCap(
        self,
        request: pb.GetSpendCapRequest,
        context: grpc.aio.ServicerContext[pb.GetSpendCapRequest, pb.GetSpendCapResponse],
    ) -> pb.GetSpendCapResponse:
        """The cap and what the current period has spent."""
        tenant = current_principal().tenant
        row, spent, currency = await usage.cap_of(self.runtime.database, tenant, self.runtime.clock)
        return pb.GetSpendCapResponse(spend_cap=messages.spend_cap(row, spent, currency))

    async def GetRollout(
        self,
        request: pb.GetRolloutRequest,
        context: grpc.aio.ServicerContext[pb.GetRolloutRequest, pb.GetRolloutResponse],
    ) -> pb.GetRolloutResponse:
        """Which tenants are pilot, GA or frozen."""
        rows = await rollout.stages(self.runtime.database)
        return pb.GetRolloutResponse(
            tenants=[messages.rollout(row) for row in rows], max_ga_tenants=rollout.MAX_GA_TENANTS
        )

    async def SetRollout(
        self,
        request: pb.SetRolloutRequest,
        context: grpc.aio.ServicerContext[pb.SetRolloutRequest, pb.SetRolloutResponse],
    ) -> pb.SetRolloutResponse:
        """Move a tenant between stages, or back out (freeze every GA tenant)."""
        actor, now = current_principal().subject, self.runtime.clock()
        if request.backout:
            rows = await rollout.back_out_all(self.runtime.database, actor, now, request.reason)
        else:
            stage = messages.STAGES.get(request.stage)
            if stage is None:
                raise InvalidArgument("stage must be pilot, GA or frozen", field="stage")
            tenant = uuid_field(request.tenant_id, "tenant_id")
            rows = await rollout.move(
                self.runtime.database, tenant, stage, actor, now, reason=request.reason
            )
        return pb.SetRolloutResponse(tenants=[messages.rollout(row) for row in rows])

    async def GetJwks(
        self,
        request: pb.GetJwksRequest,
        context: grpc.aio.ServicerContext[pb.GetJwksRequest, pb.GetJwksResponse],
    ) -> pb.GetJwksResponse:
        """Every public key that ever signed an invoice or a credit note."""
        keys = await published_keys(self.runtime.database, self.runtime.settings.document_keys_dir)
        return pb.GetJwksResponse(
            keys=[pb.Jwk(**{k: v for k, v in jwk.items() if k in _JWK_FIELDS}) for jwk in keys]
        )

    async def ListRolloutChanges(
        self,
        request: pb.ListRolloutChangesRequest,
        context: grpc.aio.ServicerContext[
            pb.ListRolloutChangesRequest, pb.ListRolloutChangesResponse
        ],
    ) -> pb.ListRolloutChangesResponse:
        """The rollout's history, newest first."""
        tenant = uuid_field(request.tenant_id, "tenant_id") if request.tenant_id else None
        page = Page.of(request, TIME_AND_ID, tenant=request.tenant_id)
        rows, token = await rollout.changes(self.runtime.database, tenant, page)
        return pb.ListRolloutChangesResponse(
            changes=[messages.rollout_change(row) for row in rows],
            page=PageResponse(next_page_token=token),
        )

    async def ListBillingAlerts(
        self,
        request: pb.ListBillingAlertsRequest,
        context: grpc.aio.ServicerContext[
            pb.ListBillingAlertsRequest, pb.ListBillingAlertsResponse
        ],
    ) -> pb.ListBillingAlertsResponse:
        """The tenant's billing alerts, newest first."""
        kind = messages.ALERT_KINDS.get(request.kind, "")
        page = Page.of(request, TIME_AND_ID, kind=kind)
        rows, token = await records.list_alerts(
            self.runtime.database, current_principal().tenant, kind, page
        )
        return pb.ListBillingAlertsResponse(
            alerts=[messages.alert(row) for row in rows],
            page=PageResponse(next_page_token=token),
        )

    # -- cost budgets ---------------------------------------------------------------------

    async def SetBudget(
        self,
        request: pb.SetBudgetRequest,
        context: grpc.aio.ServicerContext[pb.SetBudgetRequest, pb.SetBudgetResponse],
    ) -> pb.SetBudgetResponse:
        """Create or replace a cost budget."""
        given = request.budget
        amount, code = messages.amount_in(given.monthly_amount, "budget.monthly_amount")
        status = await budgets.set_budget(
            self.runtime.database,
            current_principal().tenant,
            budgets.NewBudget(given.id, given.name, amount, code, tuple(given.meters)),
            self.runtime.clock(),
        )
        return pb.SetBudgetResponse(budget=messages.budget(status))

    async def GetBudget(
        self,
        request: pb.GetBudgetRequest,
        context: grpc.aio.ServicerContext[pb.GetBudgetRequest, pb.GetBudgetResponse],
    ) -> pb.GetBudgetResponse:
        """A cost budget and what the current period spent on it."""
        status = await budgets.budget_of(
            self.runtime.database, current_principal().tenant, request.id, self.runtime.clock()
        )
        return pb.GetBudgetResponse(budget=messages.budget(status))

    async def ListBudgets(
        self,
        request: pb.ListBudgetsRequest,
        context: grpc.aio.ServicerContext[pb.ListBudgetsRequest, pb.ListBudgetsResponse],
    ) -> pb.ListBudgetsResponse:
        """The tenant's cost budgets by id."""
        page = Page.of(request, NAME)
        found = await budgets.budgets_page(
            self.runtime.database,
            current_principal().tenant,
            page.after,
            page.size + 1,
            self.runtime.clock(),
        )
        return pb.ListBudgetsResponse(
            budgets=[messages.budget(status) for status in found[: page.size]],
            page=PageResponse(next_page_token=page.next_token(found, lambda s: (s.row.id,))),
        )

    # -- profile and prices ----------------------------------------------------------------

    async def GetBillingProfile(
        self,
        request: pb.GetBillingProfileRequest,
        context: grpc.aio.ServicerContext[
            pb.GetBillingProfileRequest, pb.GetBillingProfileResponse
        ],
    ) -> pb.GetBillingProfileResponse:
        """The tenant's currency and tax facts (the defaults until set)."""
        tenant = current_principal().tenant
        return pb.GetBillingProfileResponse(
            profile=messages.profile(await profiles.profile(self.runtime.database, tenant))
        )

    async def SetBillingProfile(
        self,
        request: pb.SetBillingProfileRequest,
        context: grpc.aio.ServicerContext[
            pb.SetBillingProfileRequest, pb.SetBillingProfileResponse
        ],
    ) -> pb.SetBillingProfileResponse:
        """Set the tenant's currency (fixed once invoiced), jurisdiction, tax id and mode."""
        wanted = request.profile
        row = await profiles.set_profile(
            self.runtime.database,
            self.tax,
            current_principal().tenant,
            wanted.currency_code,
            wanted.jurisdiction,
            wanted.tax_id,
            messages.TAX_MODES.get(wanted.tax_mode),
            self.runtime.clock(),
        )
        return pb.SetBillingProfileResponse(profile=messages.profile(row))

    async def GetPriceBook(
        self,
        request: pb.GetPriceBookRequest,
        context: grpc.aio.ServicerContext[pb.GetPriceBookRequest, pb.GetPriceBookResponse],
    ) -> pb.GetPriceBookResponse:
        """Every meter's price for the tenant, in its currency."""
        prices = await profiles.prices(self.runtime.database, current_principal().tenant)
        return pb.GetPriceBookResponse(prices=[messages.price(price) for price in prices])

    async def SetPrice(
        self,
        request: pb.SetPriceRequest,
        context: grpc.aio.ServicerContext[pb.SetPriceRequest, pb.SetPriceResponse],
    ) -> pb.SetPriceResponse:
        """Set or clear one tenant's price for a meter; lines already open keep their price."""
        tenant = uuid_field(request.tenant_id, "tenant_id")
        profiles.require_known_meter(request.meter)
        unit_price = None if request.clear else messages.amount_in(request.unit_price, "unit_price")
        price = await profiles.set_price(
            self.runtime.database,
            tenant,
            request.meter,
            unit_price,
            request.per_quantity,
            self.runtime.clock(),
        )
        if price is None:
            return pb.SetPriceResponse()
        return pb.SetPriceResponse(price=messages.price(price))


SERVICE = ServiceDefinition(
    component=Metering.of,
    provides=(UsageMeter,),
    needs=(CacheInvalidation, Notifications),
    name="billing",
    descriptor=pb.DESCRIPTOR.services_by_name["BillingService"],
    servicer_class=BillingService,
    add_to_server=billing_service_pb2_grpc.add_BillingServiceServicer_to_server,
    capability="billing GA: invoices, credit notes, refunds, tax, reconciliation (issue #7)",
)


#: The members of a public JWK the contract carries.
_JWK_FIELDS = frozenset(pb.Jwk.DESCRIPTOR.fields_by_name)
