"""Billing as a unit, on a controllable clock: money and credit arithmetic, periods,
finalization of what is due, variance guards, and state-machine property tests."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings, strategies
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from core.errors import DomainError, ErrorReason
from servers.billing import reconciliation
from servers.billing.balances import balance_of
from servers.billing.credit_notes import CreditRequest, create_credit_note, void_credit_note
from servers.billing.credits import CreditRefused, LineBalance, credit_amount, credit_lines
from servers.billing.documents import DocumentSigner
from servers.billing.invoices import Billing, finalize, finalize_due, invoice_of
from servers.billing.metering import Metering
from servers.billing.money import allocate, apply_rate, round_half_up, split_inclusive
from servers.billing.refunds import create_refund, record_payment
from servers.billing.rollout import set_stage
from servers.billing.store import (
    AlertRow,
    CreditNoteRow,
    InvoiceRow,
    LedgerEntryRow,
    PaymentRow,
    ReconciliationRow,
    RefundRow,
)
from servers.billing.tax import SandboxTaxProvider
from servers.billing.usage import record_usage, set_spend_cap
from servers.db import Database
from servers.db.migrate import upgrade
from tests.support.clocks import Clock
from tests.support.serving import POSTGRES_SKIP_REASON, POSTGRES_URL, TENANT, libpq_url

# -- money and credit arithmetic ----------------------------------------------------------------


def test_the_four_line_regression_at_20_percent_credits_back_exactly() -> None:
    subtotals = [6833, 6833, 5750, 8500]
    taxes = [apply_rate(amount, Decimal("0.2")) for amount in subtotals]
    assert taxes == [1367, 1367, 1150, 1700]
    balances = {
        str(i): LineBalance(str(i), s, t)
        for i, (s, t) in enumerate(zip(subtotals, taxes, strict=True))
    }
    returned = [credit_lines(balances, [(str(i), s)])[0].tax for i, s in enumerate(subtotals)]
    assert returned == taxes
    (by_amount,) = [credit_amount(list(balances.values()), sum(subtotals) + sum(taxes))]
    assert [part.tax for part in by_amount] == taxes


@given(
    strategies.integers(-(10**12), 10**12),
    strategies.lists(strategies.integers(0, 10**6), min_size=1, max_size=12),
)
def test_allocation_sums_exactly_and_stays_within_one_unit_of_the_share(
    total: int, weights: list[int]
) -> None:
    if sum(weights) == 0:
        weights[0] = 1
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        assert abs(Fraction(part) - Fraction(total * weight, sum(weights))) < 1


@given(
    strategies.integers(0, 10**12),
    strategies.sampled_from(["0", "0.05", "0.2", "0.08875", "0.135"]),
)
def test_inclusive_splits_add_up_and_round_half_up(gross: int, rate: str) -> None:
    net, tax = split_inclusive(gross, Decimal(rate))
    assert net + tax == gross
    assert net == round_half_up(Fraction(gross) / (1 + Fraction(Decimal(rate))))


@given(
    strategies.integers(1, 10**9),
    strategies.sampled_from(["0", "0.05", "0.2", "0.08875", "0.23"]),
    strategies.lists(strategies.integers(1, 10**9), min_size=1, max_size=8),
)
def test_partial_line_credits_never_exceed_and_the_rest_returns_exact_tax(
    subtotal: int, rate: str, pieces: list[int]
) -> None:
    tax = apply_rate(subtotal, Decimal(rate))
    balance = LineBalance("l", subtotal, tax)
    for piece in pieces:
        if piece >= balance.remaining_subtotal:
            break
        (part,) = credit_lines({"l": balance}, [("l", piece)])
        assert 0 <= part.tax <= balance.remaining_tax
        balance = LineBalance(
            "l",
            subtotal,
            tax,
            balance.credited_subtotal + part.subtotal,
            balance.credited_tax + part.tax,
        )
    (rest,) = credit_lines({"l": balance}, [("l", balance.remaining_subtotal)])
    assert balance.credited_tax + rest.tax == tax
    with pytest.raises(CreditRefused):
        credit_lines({"l": LineBalance("l", subtotal, tax, subtotal, tax)}, [("l", 1)])


@given(
    strategies.lists(
        strategies.tuples(strategies.integers(0, 10**7), strategies.integers(0, 10**6)),
        min_size=1,
        max_size=6,
    ),
    strategies.integers(1, 10**8),
)
def test_credits_by_amount_split_exactly_and_respect_every_line(
    lines: list[tuple[int, int]], gross: int
) -> None:
    balances = [LineBalance(str(i), s, t) for i, (s, t) in enumerate(lines)]
    left = sum(b.remaining for b in balances)
    if gross > left:
        with pytest.raises(CreditRefused):
            credit_amount(balances, gross)
        return
    parts = credit_amount(balances, gross)
    assert sum(part.total for part in parts) == gross
    by_line = {b.line_id: b for b in balances}
    for part in parts:
        assert 0 <= part.subtotal <= by_line[part.line_id].subtotal
        assert 0 <= part.tax <= by_line[part.line_id].tax


# -- on a store, with a clock --------------------------------------------------------------------


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await upgrade(database.engine)
    yield database
    await database.dispose()


def billing_on(database: Database, directory: Path, clock: Clock) -> Billing:
    return Billing(database, SandboxTaxProvider(), DocumentSigner(directory / "keys"), clock)


async def enroll(billing: Billing, tenant: uuid.UUID = TENANT) -> None:
    async with billing.database.platform_session() as session:
        await set_stage(session, tenant, "pilot", "test", billing.clock())


async def use(billing: Billing, meter: str, quantity: int, tenant: uuid.UUID = TENANT) -> Any:
    async with billing.database.tenant_session(tenant) as session:
        now = billing.clock()
        return (
            await record_usage(session, tenant, uuid.uuid4().hex, meter, quantity, now, now)
        ).event


async def invoices(billing: Billing, tenant: uuid.UUID = TENANT) -> list[InvoiceRow]:
    async with billing.database.tenant_session(tenant, readonly=True) as session:
        return list(
            (await session.execute(select(InvoiceRow).order_by(InvoiceRow.period_start))).scalars()
        )


async def test_periods_are_months_and_due_drafts_are_finalized(
    store: Database, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
    billing = billing_on(store, tmp_path, clock)
    await enroll(billing)
    november = await use(billing, "api.call", 10)
    clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    december = await use(billing, "api.call", 5)
    assert november.invoice_id != december.invoice_id
    assert await finalize_due(billing, clock.now) == 1
    first, second = await invoices(billing)
    assert (first.status, first.number, first.total) == ("finalized", "INV-2026-000001", 11)
    assert (second.status, second.period_start) == ("draft", datetime(2026, 12, 1, tzinfo=UTC))
    clock.now = datetime(2026, 12, 10, tzinfo=UTC)
    early = await finalize(billing, TENANT, second.id)  # closes mid-month
    assert early.period_end == clock.now
    later = await use(billing, "api.call", 1)
    third = next(row for row in await invoices(billing) if row.id == later.invoice_id)
    assert (third.period_start, third.period_end) == (clock.now, datetime(2027, 1, 1, tzinfo=UTC))
    clock.now = datetime(2027, 1, 2, tzinfo=UTC)
    await finalize_due(billing, clock.now)
    numbers = [row.number for row in await invoices(billing)]
    assert numbers == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]  # gapless


async def test_a_frozen_tenants_due_drafts_wait(store: Database, tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 15, tzinfo=UTC))
    billing = billing_on(store, tmp_path, clock)
    await use(billing, "api.call", 10)  # metered although not enrolled
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    assert await finalize_due(billing, clock.now) == 0
    assert [row.status for row in await invoices(billing)] == ["draft"]


async def test_variance_alerts_on_a_day_far_from_the_trailing_median(
    store: Database, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 10, 1, 12, tzinfo=UTC))
    billing = billing_on(store, tmp_path, clock)
    await enroll(billing)
    for day in range(15):
        clock.now = datetime(2026, 10, 1, 12, tzinfo=UTC) + timedelta(days=day)
        await use(billing, "api.call", 1000 + (day % 3) * 20)  # steady: $10.00-10.40 a day
        async with store.tenant_session(TENANT) as session:
            await reconciliation.reconcile(session, TENANT, clock.now.date(), clock.now)
    clock.now += timedelta(days=1)
    await use(billing, "api.call", 9000)  # a $90 day
    async with store.tenant_session(TENANT) as session:
        report = await reconciliation.reconcile(session, TENANT, clock.now.date(), clock.now)
        assert report.drift == 0
        kinds = [row.kind for row in (await session.execute(select(AlertRow))).scalars()]
    assert kinds == ["variance"]


async def test_reconciling_every_tenant_finds_zero_drift(store: Database, tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 9, 3, 8, tzinfo=UTC))
    billing = billing_on(store, tmp_path, clock)
    tenants = [uuid.uuid4() for _ in range(3)]
    for tenant in tenants:
        await enroll(billing, tenant)
        for quantity in (1, 333, 999_999):
            await use(billing, "graphql.operation", quantity, tenant)
    assert await reconciliation.reconcile_all(store, clock.now.date(), clock.now) == 3
    for tenant in tenants:
        async with store.tenant_session(tenant, readonly=True) as session:
            (report,) = (await session.execute(select(ReconciliationRow))).scalars()
            assert (report.drift, report.metered_total) == (0, report.ledger_total)


# -- state machine -------------------------------------------------------------------------------


def near(limit: int) -> strategies.SearchStrategy[int]:
    """Amounts around a limit (where off-by-one bugs live), or anywhere below it."""
    return strategies.one_of(
        strategies.sampled_from([limit - 1, limit, limit + 1, limit + 2]),
        strategies.integers(1, max(limit, 1)),
    ).map(lambda amount: max(amount, 1))


class BillingMachine(RuleBasedStateMachine):
    """Random create/finalize/credit/void/pay/refund sequences; invariants after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.temporary = tempfile.TemporaryDirectory(prefix="billing-machine-")
        self.directory = Path(self.temporary.name)
        self.database = Database(self.database_url())
        self.clock = Clock(datetime(2026, 6, 1, tzinfo=UTC))
        self.billing = billing_on(self.database, self.directory, self.clock)
        self.tenant = uuid.uuid4()
        self.finalized: list[uuid.UUID] = []
        self.notes: list[uuid.UUID] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def attempt(self, coroutine: Any) -> Any:
        try:
            return self.run(coroutine)
        except DomainError:
            return None

    @initialize()
    def setup(self) -> None:
        self.run(upgrade(self.database.engine))
        self.run(enroll(self.billing, self.tenant))

    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.directory / 'store.db'}"

    def teardown(self) -> None:
        self.run(self.database.dispose())
        self.loop.close()
        self.temporary.cleanup()

    @rule(
        meter=strategies.sampled_from(["api.call", "graphql.operation", "analytics.pack_run"]),
        quantity=strategies.integers(1, 5000),
    )
    def use(self, meter: str, quantity: int) -> None:
        self.clock.now += timedelta(minutes=7)
        self.run(use(self.billing, meter, quantity, self.tenant))

    @rule()
    def finalize(self) -> None:
        drafts = [
            row for row in self.run(invoices(self.billing, self.tenant)) if row.status == "draft"
        ]
        for draft in drafts:
            issued = self.run(finalize(self.billing, self.tenant, draft.id))
            self.finalized.append(issued.id)

    @precondition(lambda self: self.finalized)
    @rule(data=strategies.data())
    def credit(self, data: strategies.DataObject) -> None:
        invoice_id = data.draw(strategies.sampled_from(self.finalized))
        balance = self.run(self._balance(invoice_id))
        if data.draw(strategies.booleans()):
            left = sum(line.remaining for line in balance.balances)
            request = CreditRequest(invoice_id, amount=data.draw(near(left)), currency="USD")
        else:
            if not balance.balances:
                return
            line = data.draw(strategies.sampled_from(balance.balances))
            request = CreditRequest(
                invoice_id, lines=((line.line_id, data.draw(near(line.remaining_subtotal))),)
            )
        issued = self.attempt(create_credit_note(self.billing, self.tenant, request))
        if issued is not None:
            self.notes.append(issued.note.id)

    async def _balance(self, invoice_id: uuid.UUID) -> Any:
        async with self.database.tenant_session(self.tenant, readonly=True) as session:
            return await balance_of(session, await invoice_of(session, invoice_id))

    @precondition(lambda self: self.notes)
    @rule(data=strategies.data())
    def void(self, data: strategies.DataObject) -> None:
        self.attempt(
            void_credit_note(
                self.billing, self.tenant, data.draw(strategies.sampled_from(self.notes))
            )
        )

    @precondition(lambda self: self.finalized)
    @rule(data=strategies.data())
    def pay(self, data: strategies.DataObject) -> None:
        invoice_id = data.draw(strategies.sampled_from(self.finalized))
        due = self.run(self._balance(invoice_id)).due
        amount = data.draw(near(due))
        self.attempt(record_payment(self.billing, self.tenant, invoice_id, amount, "USD"))

    @precondition(lambda self: self.finalized)
    @rule(data=strategies.data())
    def refund(self, data: strategies.DataObject) -> None:
        invoice_id = data.draw(strategies.sampled_from(self.finalized))
        balance = self.run(self._balance(invoice_id))
        note = data.draw(strategies.sampled_from([None, *self.notes]))
        amount = data.draw(near(balance.paid - balance.refunded))
        self.attempt(create_refund(self.billing, self.tenant, invoice_id, amount, "USD", note))

    @invariant()
    def money_adds_up(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        async with self.database.tenant_session(self.tenant, readonly=True) as session:
            for invoice in (await session.execute(select(InvoiceRow))).scalars():
                assert invoice.subtotal + invoice.tax == invoice.total
                if invoice.status != "finalized":
                    continue
                balance = await balance_of(session, invoice)
                assert 0 <= balance.credited <= invoice.total
                assert 0 <= balance.refunded <= balance.paid
                assert balance.paid - balance.refunded <= invoice.total
                for line in balance.balances:
                    assert 0 <= line.credited_subtotal <= line.subtotal
                    assert 0 <= line.credited_tax <= line.tax
                    if line.credited_subtotal == line.subtotal:
                        assert line.credited_tax == line.tax
            for note in (await session.execute(select(CreditNoteRow))).scalars():
                assert note.subtotal + note.tax == note.total > 0
                refunded = await session.scalar(
                    select(func.coalesce(func.sum(RefundRow.amount), 0)).where(
                        RefundRow.credit_note_id == note.id
                    )
                )
                assert int(refunded or 0) <= note.total
                if note.status == "void":
                    assert not refunded
            owed = await session.scalar(select(func.coalesce(func.sum(LedgerEntryRow.amount), 0)))
            documents = 0
            for invoice in (await session.execute(select(InvoiceRow))).scalars():
                documents += invoice.total if invoice.status == "finalized" else invoice.subtotal
            issued = await session.scalar(
                select(func.coalesce(func.sum(CreditNoteRow.total), 0)).where(
                    CreditNoteRow.status == "issued"
                )
            )
            paid = await session.scalar(select(func.coalesce(func.sum(PaymentRow.amount), 0)))
            refunded = await session.scalar(select(func.coalesce(func.sum(RefundRow.amount), 0)))
            assert int(owed or 0) == documents - int(issued or 0) - int(paid or 0) + int(
                refunded or 0
            )


TestBillingProperties = pytest.mark.slow(BillingMachine.TestCase)
TestBillingProperties.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class PostgresBillingMachine(BillingMachine):
    """The same machine on PostgreSQL, each example in a schema of its own."""

    def database_url(self) -> str:
        self.schema = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{self.schema}"')
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={self.schema}"})
        return url.render_as_string(hide_password=False)

    def teardown(self) -> None:
        super().teardown()
        with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{self.schema}" CASCADE')


TestBillingPropertiesOnPostgres = pytest.mark.slow(
    pytest.mark.postgres(
        pytest.mark.skipif(not POSTGRES_URL, reason=POSTGRES_SKIP_REASON)(
            PostgresBillingMachine.TestCase
        )
    )
)
TestBillingPropertiesOnPostgres.settings = settings(
    max_examples=8,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- metering ------------------------------------------------------------------------------------


def test_an_unpriced_meter_is_refused_when_counted(tmp_path: Path) -> None:
    metering = Metering(Database(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"), Clock())
    with pytest.raises(ValueError, match="not in the price book"):
        metering.count(TENANT, "catalog.lookup")


async def test_metered_work_is_flushed_once_and_the_cap_stops_new_work(
    store: Database, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 8, 1, 9, tzinfo=UTC))
    billing = billing_on(store, tmp_path, clock)
    metering = Metering(store, clock, admit_cache_s=0)
    for _ in range(1500):
        metering.count(TENANT, "graphql.operation")
    metering.count(TENANT, "analytics.pack_run", 3)
    assert await metering.flush() == 2
    assert await metering.flush() == 0  # nothing new: nothing recorded twice
    (draft,) = await invoices(billing)
    assert draft.subtotal == 8 + 6  # 1500 operations at 5 per 1000 (7.5 -> 8), 3 runs at 2
    async with store.tenant_session(TENANT) as session:
        await set_spend_cap(session, TENANT, 20, "USD", clock.now)
    await metering.admit(TENANT)
    metering.count(TENANT, "analytics.pack_run", 4)  # admitted: 14 -> 22, past the cap
    await metering.flush()
    (draft,) = await invoices(billing)
    assert draft.subtotal == 22
    with pytest.raises(DomainError) as refused:
        await metering.admit(TENANT)
    assert refused.value.reason == ErrorReason.ERROR_REASON_SPEND_CAP_REACHED
