"""Faults under the seed's load mix, on two replicas: what must hold, and how fast it recovers.

Each case runs the load mix (tests/support/loadmix.py, at half the seed's
rates on two tenants) on its own PostgreSQL, Redis and two replicas, injects
one fault a fifth of the way in, and then proves:

* nothing lost or duplicated: metered usage = what was acknowledged, the
  reconciliation of ledger, usage and documents finds no drift, one credit note
  per acknowledged one, every finalized invoice still final, every upload whole
  (the SDK resumes them), the audit chain verifies;
* calls failed cleanly, and only while the fault lasted (UNAVAILABLE, which the
  SDK retries where the RPC is safe to repeat; keyed writes the load retries);
* reads through the edge cache were never staler than its TTL + grace, and
  fresh again after recovery.

Each adds its row to the results table (`test-artifacts/chaos/chaos.md`).
`make chaos` runs them with a longer load (CONDUCTOR_CHAOS_SECONDS).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from intelgraph.sdk import billing as billing_pb

from servers.access.revocation import POLL_INTERVAL_S as REVOCATION_BOUND_S
from tests.chaos.harness import (
    EDGE_STALE_S,
    EDGE_TTL_S,
    Billed,
    CutUpload,
    Jit,
    Outcome,
    Stack,
    alert_expression,
    gauges_above_zero,
    gauges_cleared,
    metric,
    record,
    until,
)

pytestmark = [pytest.mark.timeout(300)]

#: Slack over a bound for a loaded 2-core machine (probes poll every 50-100 ms).
SLACK_S = 1.0
#: How soon after a fault ends (a replica or a server back) calls must stop failing.
RECOVERY_S = 3.0


def assert_clean(outcome: Outcome, *, until: float, codes: frozenset[str]) -> None:
    """Nothing lost or doubled; failures only of `codes`, only from injection to `until` + slack."""
    findings = outcome.findings
    assert (findings.lost, findings.duplicated, findings.problems) == (0, 0, [])
    assert not outcome.mix.ledger.uploads_failed, "an upload did not resume"
    for sample in outcome.failures():
        code = sample.outcome.split(":", 1)[1]
        assert code in codes, f"{sample.operation} failed with {code}: {sample.detail}"
        assert outcome.injected_at <= sample.at + sample.seconds <= until + SLACK_S, (
            f"{sample.operation} failed at {sample.at:.2f} s, outside the fault "
            f"({outcome.injected_at:.2f} to {until:.2f} s)"
        )
    assert outcome.freshness.staleness, "the freshness probe read nothing back"
    assert not outcome.freshness.unseen, "a price change never reached a replica's reads"
    assert outcome.freshness.worst() <= EDGE_TTL_S + EDGE_STALE_S + SLACK_S


def assert_resumed(upload: CutUpload, offset: int, sha256: str) -> None:
    """The cut upload went on from what was committed (not from scratch) and came out whole."""
    assert 0 < offset < len(upload.data)
    assert sha256 == upload.metadata.sha256


async def test_a_replica_killed_with_sigkill_loses_nothing(stack: Stack) -> None:
    async def kill_and_restart(stack: Stack, clock: Callable[[], float]) -> dict[str, Any]:
        replica = stack.cluster.members[1]
        upload = CutUpload(stack)
        await upload.start(replica=1)  # in flight on b when b dies
        replica.signal(signal.SIGKILL)
        killed = clock()
        resumed = await upload.resume(replica=0)  # on a, from what b committed
        await asyncio.sleep(2.0)
        await asyncio.to_thread(replica.start)
        return {"injected": killed, "back": clock(), "upload": upload, "resumed": resumed}

    outcome = await stack.under_load(kill_and_restart)
    fault = outcome.fault
    back = fault["back"]
    assert_clean(outcome, until=back + RECOVERY_S, codes=frozenset({"UNAVAILABLE"}))
    assert_resumed(fault["upload"], *fault["resumed"])
    detected = outcome.watcher.first("b", up=False, after=outcome.injected_at)
    assert detected is not None
    record(
        "replica SIGKILL (restarted after 2 s)",
        outcome,
        detected,
        max(back, outcome.last_failure() or back),
        f"an upload cut on b resumed on a from byte {fault['resumed'][0]}",
    )


async def test_sigterm_under_load_drains_and_loses_nothing(stack: Stack) -> None:
    async def terminate_and_restart(stack: Stack, clock: Callable[[], float]) -> dict[str, Any]:
        replica = stack.cluster.members[1]
        replica.signal(signal.SIGTERM)
        status = await asyncio.to_thread(replica.wait, 30)
        stopped = clock()
        await asyncio.to_thread(replica.start)
        return {"status": status, "stopped": stopped, "back": clock()}

    outcome = await stack.under_load(terminate_and_restart)
    assert outcome.fault["status"] == 0
    back = outcome.fault["back"]
    recovered = max(back, outcome.last_failure() or back)
    # A drain fails nothing: gRPC clients are sent elsewhere (GOAWAY) before their calls go
    # out, HTTP finishes what it took and closes kept-alive connections between requests.
    assert_clean(outcome, until=back + RECOVERY_S, codes=frozenset())
    record(
        "replica SIGTERM (drained, restarted)",
        outcome,
        outcome.watcher.first("b", up=False, after=outcome.injected_at),
        recovered,
        f"drained and exited 0 in {outcome.fault['stopped'] - outcome.injected_at:.1f} s",
    )


async def test_postgresql_restarting_mid_load_fails_calls_cleanly(stack: Stack) -> None:
    async def restart(stack: Stack, clock: Callable[[], float]) -> dict[str, Any]:
        upload = CutUpload(stack)
        await upload.start(replica=0)  # in flight when the database goes
        stopped = clock()  # from the moment it is told to stop (it ends sessions at once)
        await asyncio.to_thread(stack.postgres.stop, "fast")
        await asyncio.sleep(2.0)
        await asyncio.to_thread(stack.postgres.start)
        back = clock()
        resumed = await upload.resume(replica=1)
        return {"injected": stopped, "back": back, "upload": upload, "resumed": resumed}

    outcome = await stack.under_load(restart)
    fault = outcome.fault
    back = fault["back"]
    assert_clean(outcome, until=back + RECOVERY_S, codes=frozenset({"UNAVAILABLE"}))
    assert_resumed(fault["upload"], *fault["resumed"])
    record(
        "PostgreSQL restart (down 2 s)",
        outcome,
        outcome.first_failure(after=outcome.injected_at),
        max(back, outcome.last_failure() or back),
        f"an upload cut by the restart resumed from byte {fault['resumed'][0]}",
    )


async def test_redis_down_fails_no_call_and_invalidations_resume(stack: Stack) -> None:
    async def down_and_up(stack: Stack, clock: Callable[[], float]) -> dict[str, float]:
        stack.redis.stop()
        await asyncio.sleep(3.0)
        await asyncio.to_thread(stack.redis.start)  # empty: nothing was persisted
        return {"back": clock()}

    outcome = await stack.under_load(down_and_up)
    back = outcome.fault["back"]
    assert_clean(outcome, until=back, codes=frozenset())
    # Once Redis is back (and replicas reconnected), changes reach both replicas' reads at once.
    settled = back + 2.0
    assert outcome.freshness.worst(after=settled) <= SLACK_S
    detected = min(
        (t for t in (outcome.fault_seen(r, "Redis") for r in stack.cluster.members) if t),
        default=None,
    )
    record(
        "Redis down 3 s (restarted empty)",
        outcome,
        detected,
        back,
        f"worst read staleness {outcome.freshness.worst():.2f} s "
        f"(bound {EDGE_TTL_S + EDGE_STALE_S:.0f} s)",
    )


async def test_a_lost_purge_announcement_is_caught_within_the_staleness_bound(stack: Stack) -> None:
    b = stack.cluster.members[1]
    caught = "edge_cache_invalidations_caught_by_poll_total"

    async def drop_announcements(stack: Stack, clock: Callable[[], float]) -> dict[str, Any]:
        # Nothing counted while every announcement arrived (the run so far): no false alarm.
        healthy = [await metric(replica, caught) for replica in stack.cluster.members]
        before = healthy[1]
        # b's Redis connections are reset and held: the announcements published meanwhile
        # (the probe changes its price every few hundred ms, on either replica) never reach it.
        stack.redis_proxy.stall()
        stack.redis_proxy.cut()
        cut = clock()
        await asyncio.sleep(1.5)
        stack.redis_proxy.heal()
        healed = clock()
        seen = None
        for _ in range(100):
            if await metric(b, caught) > before:
                seen = clock()
                break
            await asyncio.sleep(0.1)
        return {"cut": cut, "healed": healed, "caught_at": seen, "healthy": healthy}

    outcome = await stack.under_load(drop_announcements)
    fault = outcome.fault
    assert fault["healthy"] == [0, 0], "announced invalidations were counted as lost"
    assert fault["caught_at"] is not None, "replica b never counted an invalidation caught by poll"
    assert_clean(outcome, until=fault["healed"], codes=frozenset())
    # The changes made while b was cut off reached its reads once its poll caught them.
    during = [
        (t + s) for t, n, s in outcome.freshness.staleness
        if n == "b" and fault["cut"] <= t <= fault["healed"]
    ]  # fmt: skip
    assert during, "the probe changed nothing while b was cut off"
    record(
        "purge announcement lost (b's Redis cut 1.5 s)",
        outcome,
        fault["caught_at"],
        max(fault["caught_at"], *during),
        f"worst staleness on b {outcome.freshness.worst('b'):.2f} s "
        f"(bound {EDGE_TTL_S + EDGE_STALE_S:.0f} s)",
    )


async def test_a_revocation_reaches_a_replica_cut_off_from_redis_and_overdue_grants_alert(
    stack: Stack,
) -> None:
    async def delay_revocations(stack: Stack, clock: Callable[[], float]) -> dict[str, Any]:
        stack.redis_proxy.stall()  # b hears no revocation announced on Redis
        jit = Jit(stack)
        async with jit:
            revoked_after = await jit.revoke_and_watch()
            # The expiry job stalls: a holder that never finishes keeps its lease for 12 s
            # (the gauges are refreshed every 5 s: the grants stay overdue longer than that).
            stack.hold_lease("access.expiry", seconds=12.0)
            held = clock()
            tokens = await jit.grants_ending_in(2.5, count=2)
            overdue_at = await until(clock, partial(gauges_above_zero, stack), timeout_s=20)
            refused = await jit.all_refused(tokens)
            cleared_at = await until(clock, partial(gauges_cleared, stack), timeout_s=30)
        stack.redis_proxy.heal()
        return {
            "revoked_after": revoked_after,
            "held": held,
            "overdue_at": overdue_at,
            "ended_refused": refused,
            "cleared_at": cleared_at,
        }

    outcome = await stack.under_load(delay_revocations)
    fault = outcome.fault
    assert fault["revoked_after"] <= REVOCATION_BOUND_S + SLACK_S
    assert fault["overdue_at"] is not None, "the overdue gauge never rose"
    assert fault["ended_refused"], "a JIT token past its grant's end was accepted"
    assert fault["cleared_at"] is not None, "overdue grants were never expired"
    assert alert_expression("AccessGrantsNotRevokedOnTime") == (
        "max without (instance) (access_grants_overdue) > 0"
    )
    assert_clean(outcome, until=fault["cleared_at"], codes=frozenset())
    record(
        "token revoke delay (b cut off from Redis; expiry job stalled 12 s)",
        outcome,
        fault["overdue_at"],
        fault["cleared_at"],
        f"revoked token refused on b after {fault['revoked_after'] * 1000:.0f} ms "
        f"(bound {REVOCATION_BOUND_S * 1000:.0f} ms, database polling); overdue gauge and "
        "alert condition up while expiry stalled",
    )


@pytest.mark.tax_api
async def test_a_tax_api_outage_leaves_invoices_pending_then_issues_them_taxed_right(
    stack: Stack,
) -> None:
    assert stack.tax_api is not None
    assert stack.tax_proxy is not None
    tax_api, tax_proxy = stack.tax_api, stack.tax_proxy

    async def outage(stack: Stack, clock: Callable[[], float]) -> dict[str, Any]:
        async with Billed(stack) as billed:
            tax_proxy.stall()  # the API answers nothing: each call times out (1 s)
            stalled = clock()
            first = await billed.finalize(quantity=700)
            pending_at = clock()
            await asyncio.to_thread(tax_api.stop)  # then it is gone: connections refused
            tax_proxy.heal()
            second = await billed.finalize(quantity=333)
            third = await billed.finalize(quantity=1)
            alerts = await billed.tax_pending_alerts()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(tax_api.start)
            back = clock()
            invoices = [first, second, third]
            issued = await billed.all_finalized([i.id for i in invoices], timeout_s=30)
            issued_at = clock()
        return {
            "injected": stalled,
            "pending": invoices,
            "pending_at": pending_at,
            "alerts": alerts,
            "back": back,
            "issued": issued,
            "issued_at": issued_at,
        }

    outcome = await stack.under_load(outage)
    fault = outcome.fault
    for invoice in fault["pending"]:  # nothing taxed, numbered or signed while the API was down
        assert invoice.status == billing_pb.INVOICE_STATUS_TAX_PENDING
        assert (invoice.number, invoice.tax.minor_units, invoice.signature) == ("", 0, "")
    assert set(fault["alerts"]) == {invoice.id for invoice in fault["pending"]}
    # Issued after recovery, each taxed exactly as the sandbox's rate table says (UK VAT 20 %).
    assert [(i.subtotal.minor_units, i.tax.minor_units) for i in fault["issued"]] == [
        (700, 140),
        (333, 67),
        (1, 0),
    ]
    assert all(invoice.number and invoice.signature for invoice in fault["issued"])
    # Calls that finalize while the API is down answer (pending), they do not fail.
    assert_clean(outcome, until=fault["issued_at"], codes=frozenset())
    record(
        "tax API outage (hangs 1 s per call, then down)",
        outcome,
        fault["pending_at"],
        fault["issued_at"],
        f"3 invoices tax_pending with alerts; issued {fault['issued_at'] - fault['back']:.1f} s "
        "after the API came back, tax exact",
    )
