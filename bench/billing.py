"""Billing on PostgreSQL: signed credit notes per second, and reconciling a million usage events.

1. Issuance: `--notes` signed, numbered credit notes (default 2000) through the
   billing module (one transaction each: invariant checks, gapless number,
   Ed25519 signature, ledger entry), for 8 tenants (the GA maximum) with two
   concurrent issuers each sharing the tenant's number series, split over
   `--workers` processes (default: the cores, as `conductor serve --workers`).
   Baseline in the same run: as many payments (the same transaction shape, no
   signature, no number).
2. Reconciliation: a day of `--events` usage events (default 1,000,000) over 4
   meters, loaded with COPY together with their ledger entries, then
   reconciled (aggregated in the database). Baseline in the same run: one scan
   summing the day's events.

The last line is JSON: {"bench": "billing", "credit_notes_per_s", "payments_per_s",
"issuance_ratio", "reconcile_1m_s", "scan_s", "reconcile_ratio", "events", "drift"}
(targets: >= 200 credit notes/s; 1M events reconciled in <= 30 s, with drift 0).

    python bench/billing.py [--quick] [--notes N] [--events N] [--workers N]
    (PostgreSQL on 127.0.0.1 by default; CONDUCTOR_BENCH_POSTGRES_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy.engine import make_url

from servers.billing import reconciliation
from servers.billing.credit_notes import CreditRequest, create_credit_note
from servers.billing.documents import DocumentSigner
from servers.billing.invoices import Billing, finalize
from servers.billing.money import round_half_up
from servers.billing.refunds import record_payment
from servers.billing.rollout import MAX_GA_TENANTS, set_stage
from servers.billing.tax import SandboxTaxProvider
from servers.billing.usage import current_draft, record_usage
from servers.db import Database
from servers.db.migrate import upgrade

METERS = ("api.call", "graphql.operation", "analytics.pack_run", "rag.bytes")
PRICES = {"api.call": (1, 1), "graphql.operation": (5, 1000), "analytics.pack_run": (2, 1),
          "rag.bytes": (10, 1_000_000)}  # fmt: skip


class Schema:
    """A private PostgreSQL schema for the run."""

    def __init__(self, url: str) -> None:
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.libpq = make_url(url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(self.libpq, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{self.name}"')
        self.url = (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={self.name}"})
            .render_as_string(hide_password=False)
        )

    def drop(self) -> None:
        with psycopg.connect(self.libpq, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{self.name}" CASCADE')


async def _invoices(billing: Billing, tenant: uuid.UUID, count: int) -> list[uuid.UUID]:
    """`count` finalized invoices, each large enough for thousands of small credits."""
    made = []
    for index in range(count):
        async with billing.database.tenant_session(tenant) as session:
            now = billing.clock()
            event = await record_usage(
                session, tenant, f"seed{index}", "api.call", 10_000_000, now, now
            )
        made.append((await finalize(billing, tenant, event.event.invoice_id)).id)
    return made


async def _lanes(  # noqa: PLR0917 - one worker's share of the run
    url: str,
    keys: str,
    day: datetime,
    lanes: list[tuple[uuid.UUID, uuid.UUID]],
    per_lane: int,
    barrier: Barrier,
) -> list[float]:
    """Seconds this worker took for its credit notes, then for as many payments."""
    database = Database(url, pool_size=len(lanes) + 2)
    billing = Billing(
        database, SandboxTaxProvider(), DocumentSigner(Path(keys)), lambda: day + timedelta(hours=1)
    )

    async def lane(tenant: uuid.UUID, invoice_id: uuid.UUID, kind: str) -> None:
        for _ in range(per_lane):
            if kind == "credit":
                request = CreditRequest(invoice_id, amount=7, currency="USD")
                await create_credit_note(billing, tenant, request)
            else:
                await record_payment(billing, tenant, invoice_id, 7, "USD")

    try:
        await record_payment(billing, *lanes[0], 1, "USD")  # warm: connections, statements
        took = []
        for kind in ("credit", "payment"):
            await asyncio.to_thread(barrier.wait)
            started = time.perf_counter()
            await asyncio.gather(*(lane(tenant, invoice, kind) for tenant, invoice in lanes))
            took.append(time.perf_counter() - started)
        return took
    finally:
        await database.dispose()


def _worker(  # noqa: PLR0917 - spawned with its share of the run
    url: str,
    keys: str,
    day: datetime,
    lanes: list[tuple[uuid.UUID, uuid.UUID]],
    per_lane: int,
    barrier: Barrier,
    results: Queue[list[float]],
) -> None:
    results.put(asyncio.run(_lanes(url, keys, day, lanes, per_lane, barrier)))


async def issuance(
    billing: Billing, url: str, keys: str, notes: int, workers: int
) -> tuple[float, float]:
    """(credit notes per second, payments per second) over the same lanes and invoices.

    The GA maximum of tenants, each with two concurrent issuers (one invoice
    each) sharing the tenant's number series, split over `workers` processes
    as `conductor serve --workers` would split them.
    """
    day = billing.clock() - timedelta(hours=1)
    lanes = []
    for _ in range(MAX_GA_TENANTS):
        tenant = uuid.uuid4()
        async with billing.database.platform_session() as session:
            await set_stage(session, tenant, "pilot", "bench", day)
        lanes += [(tenant, invoice) for invoice in await _invoices(billing, tenant, 2)]
    per_lane = max(notes // len(lanes), 1)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(url, keys, day, lanes[index::workers], per_lane, barrier, results),
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    took = [await asyncio.to_thread(results.get) for _ in processes]
    for process in processes:
        process.join()
    issued = per_lane * len(lanes)
    return (
        issued / max(seconds[0] for seconds in took),
        issued / max(seconds[1] for seconds in took),
    )


def _copy(libpq: str, schema: str, table: str, columns: str, rows: io.StringIO) -> None:
    rows.seek(0)
    with psycopg.connect(libpq, options=f"-csearch_path={schema}") as connection:
        with connection.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            while chunk := rows.read(1 << 20):
                copy.write(chunk)
        connection.commit()


async def load_day(
    billing: Billing, schema: Schema, tenant: uuid.UUID, events: int, day: datetime
) -> None:
    """A day of usage and its ledger entries, rated exactly as RecordUsage rates them."""
    async with billing.database.tenant_session(tenant) as session:
        draft = await current_draft(session, tenant, day + timedelta(hours=23))
        lines = {}
        for meter in METERS:  # one event per meter creates the lines at their prices
            recorded = await record_usage(
                session, tenant, f"first-{meter}", meter, 1, day, day + timedelta(seconds=1)
            )
            lines[meter] = recorded.event.line_id
        invoice_id = draft.id
    rng = np.random.default_rng(5)
    meters = rng.integers(0, len(METERS), size=events)
    quantities = rng.integers(1, 5000, size=events)
    seconds = np.sort(rng.uniform(2, 86_399, size=events))
    usage, ledger = io.StringIO(), io.StringIO()
    cumulative = dict.fromkeys(METERS, 1)
    amounts = {
        meter: round_half_up(Fraction(PRICES[meter][0], PRICES[meter][1])) for meter in METERS
    }
    tenant_text, invoice_text = str(tenant), str(invoice_id)
    for index in range(events):
        meter = METERS[meters[index]]
        price, per = PRICES[meter]
        cumulative[meter] += int(quantities[index])
        amount = round_half_up(Fraction(cumulative[meter] * price, per))
        change = amount - amounts[meter]
        amounts[meter] = amount
        at = (day + timedelta(seconds=float(seconds[index]))).isoformat()
        usage.write(
            f"{tenant_text}\tb{index}\t{meter}\t{quantities[index]}\t{at}\t{at}\t"
            f"{invoice_text}\t{lines[meter]}\t{change}\n"
        )
        if change:
            ledger.write(
                f"{uuid.uuid4()}\t{tenant_text}\tusage\t{change}\tUSD\t{invoice_text}\tb{index}\t{at}\n"
            )
    usage_columns = (
        "tenant_id, event_id, meter, quantity, occurred_at, recorded_at,"
        " invoice_id, line_id, amount"
    )
    ledger_columns = "id, tenant_id, kind, amount, currency, invoice_id, source_id, recorded_at"
    _copy(schema.libpq, schema.name, "usage_events", usage_columns, usage)
    _copy(schema.libpq, schema.name, "billing_ledger", ledger_columns, ledger)
    with psycopg.connect(schema.libpq, options=f"-csearch_path={schema.name}") as connection:
        # The line totals the loaded events imply (what RecordUsage would have left there).
        for meter in METERS:
            connection.execute(
                "UPDATE invoice_lines SET quantity = %s, amount = %s, subtotal = %s, total = %s"
                " WHERE id = %s",
                (cumulative[meter], amounts[meter], amounts[meter], amounts[meter], lines[meter]),
            )
        connection.execute("ANALYZE")
        connection.commit()


async def reconcile_day(
    billing: Billing, schema: Schema, tenant: uuid.UUID, day: datetime
) -> tuple[float, float, int]:
    """(seconds to reconcile, seconds for one summing scan, drift)."""
    started = time.perf_counter()
    async with billing.database.tenant_session(tenant) as session:
        report = await reconciliation.reconcile(session, tenant, day.date(), billing.clock())
    reconcile_s = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(schema.libpq, options=f"-csearch_path={schema.name}") as connection:
        connection.execute(
            "SELECT count(*), sum(quantity) FROM usage_events WHERE tenant_id = %s"
            " AND recorded_at >= %s AND recorded_at < %s",
            (tenant, day, day + timedelta(days=1)),
        ).fetchone()
    return reconcile_s, time.perf_counter() - started, report.drift


async def run(url: str, notes: int, events: int, workers: int) -> dict[str, float | int]:
    schema = Schema(url)
    database = Database(schema.url)
    try:
        await upgrade(database.engine)
        day = datetime(2026, 11, 27, tzinfo=UTC)
        clock_now = [day + timedelta(hours=1)]
        with tempfile.TemporaryDirectory() as keys:
            billing = Billing(
                database, SandboxTaxProvider(), DocumentSigner(Path(keys)), lambda: clock_now[0]
            )
            reconciling = uuid.uuid4()
            async with database.platform_session() as session:
                await set_stage(session, reconciling, "pilot", "bench", day)
            credit_rate, payment_rate = await issuance(billing, schema.url, keys, notes, workers)
            rates = f"{credit_rate:.0f}/s (payments {payment_rate:.0f}/s)"
            print(f"issued {notes} credit notes: {rates}", file=sys.stderr)
            started = time.perf_counter()
            await load_day(billing, schema, reconciling, events, day)
            print(
                f"loaded {events} events in {time.perf_counter() - started:.1f} s", file=sys.stderr
            )
            clock_now[0] = day + timedelta(days=1, hours=1)
            reconcile_s, scan_s, drift = await reconcile_day(billing, schema, reconciling, day)
    finally:
        await database.dispose()
        schema.drop()
    return {
        "credit_notes_per_s": round(credit_rate, 1),
        "payments_per_s": round(payment_rate, 1),
        "issuance_ratio": round(credit_rate / payment_rate, 3),
        "reconcile_1m_s": round(reconcile_s * 1_000_000 / events, 2),
        "reconcile_s": round(reconcile_s, 2),
        "scan_s": round(scan_s, 3),
        "reconcile_ratio": round(reconcile_s / scan_s, 1),
        "events": events,
        "drift": drift,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 notes, 100k events")
    parser.add_argument("--notes", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="issuing processes (cores)"
    )
    args = parser.parse_args()
    notes = args.notes or (400 if args.quick else 2000)
    events = args.events or (100_000 if args.quick else 1_000_000)
    url = os.environ.get(
        "CONDUCTOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    result = asyncio.run(run(url, notes, events, args.workers))
    print(json.dumps({"bench": "billing", **result}))


if __name__ == "__main__":
    main()
