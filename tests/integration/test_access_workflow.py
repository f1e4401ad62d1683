"""The access workflow as a unit, on a controllable clock: atomicity, backlog expiry, audit
tampering, pending expiry, notifications with retries, revocation fan-out, and property tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings, strategies
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from core.errors import DomainError, ErrorReason
from interceptors.keys import KeyStore, rotate
from interceptors.policy import PolicyEngine
from interceptors.tokens import InMemoryRevocations, Principal
from servers.access import metrics, reviews
from servers.access.audit import append_audit, facts_from_line
from servers.access.component import AccessComponent
from servers.access.domain import verify_chain
from servers.access.notifications import Outbox, WebhookDispatcher
from servers.access.revocation import RevocationFeed
from servers.access.store import (
    AccessRequestRow,
    AuditEventRow,
    GrantRow,
    NotificationRow,
    ReviewRow,
    RevocationRow,
)
from servers.access.workflow import AccessWorkflow
from servers.cli import main
from servers.config import load_settings
from servers.db import ALL_TENANTS, Database
from servers.db.migrate import upgrade
from servers.runtime import Runtime
from tests.support.clocks import Clock
from tests.support.principals import principal
from tests.support.serving import POSTGRES_SKIP_REASON, POSTGRES_URL, libpq_url
from tests.support.webhooks import Webhook

ENGINE = PolicyEngine()


async def make_runtime(url: str, var_dir: Path, clock: Clock, **changes: Any) -> Runtime:
    database = Database(url)
    await upgrade(database.engine)
    rotate(var_dir / "keys", "EdDSA")
    options: dict[str, Any] = {"var_dir": var_dir, "grpc_port": 0, "http_port": 0, **changes}
    settings = load_settings(**options)
    return Runtime(
        settings=settings,
        database=database,
        keys=KeyStore(var_dir / "keys"),
        engine=ENGINE,
        components=(
            AccessComponent(
                RevocationFeed(database, InMemoryRevocations()), Outbox(settings.webhook_urls)
            ),
        ),
        clock=clock,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def runtime(database_url: str, tmp_path: Path, clock: Clock) -> AsyncIterator[Runtime]:
    built = await make_runtime(database_url, tmp_path, clock)
    yield built
    await built.database.dispose()


TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")
ALICE = principal(TENANT, "alice", ["catalog.read"])
BOB = principal(TENANT, "bob", ["admin.write"])
CAROL = principal(TENANT, "carol", ["admin.write"])


async def _count(runtime: Runtime, model: Any) -> int:
    async with runtime.database.platform_session() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(model).execution_options(**{ALL_TENANTS: True})
            )
            or 0
        )


async def test_a_crash_between_approval_and_mint_leaves_nothing_half_written(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = AccessWorkflow(runtime)
    request = await flow.request_access(
        ALICE, ["catalog.read"], runtime.clock() + timedelta(hours=1), ""
    )
    events_before = await _count(runtime, AuditEventRow)
    real_append = append_audit  # what reviews calls, until patched below

    async def crash_on_mint(session: Any, **kwargs: Any) -> Any:
        if kwargs["action"] == "mint":
            raise RuntimeError("power cut")
        return await real_append(session, **kwargs)

    monkeypatch.setattr(reviews, "append_audit", crash_on_mint)
    with pytest.raises(RuntimeError, match="power cut"):
        await flow.approve(BOB, str(request.id), None, "")
    monkeypatch.setattr(reviews, "append_audit", real_append)
    assert await _count(runtime, GrantRow) == 0
    assert await _count(runtime, ReviewRow) == 0
    assert await _count(runtime, AuditEventRow) == events_before
    row, _, grant = await flow.get_request(ALICE, str(request.id))
    assert (row.status, grant) == ("pending", None)
    # And it can still be approved, cleanly, afterwards.
    _, _, granted = await flow.approve(BOB, str(request.id), None, "")
    assert granted is not None
    assert (await flow.verify_chain(BOB)).valid


async def test_the_expiry_job_catches_up_on_its_backlog(runtime: Runtime, clock: Clock) -> None:
    flow = AccessWorkflow(runtime)
    grants = []
    for minutes in (1, 2, 3):
        request = await flow.request_access(
            ALICE, ["catalog.read"], clock() + timedelta(minutes=minutes), ""
        )
        grants.append((await flow.approve(BOB, str(request.id), None, ""))[2])
    clock.advance(3600)  # the job was stopped all along
    await flow.observe_grants()
    assert metrics.GRANTS_OVERDUE._value.get() == 3
    assert await flow.expire_due() == 3
    await flow.observe_grants()
    assert metrics.GRANTS_OVERDUE._value.get() == 0
    async with runtime.database.tenant_session(TENANT) as session:
        statuses = (await session.execute(select(GrantRow.status))).scalars().all()
        expiries = (
            (
                await session.execute(
                    select(AuditEventRow.action).where(AuditEventRow.action == "expire")
                )
            )
            .scalars()
            .all()
        )
    assert statuses == ["expired"] * 3
    assert len(expiries) == 3
    assert await flow.expire_due() == 0
    # A claim after the end is refused even before the job records it.
    late = await flow.request_access(ALICE, ["catalog.read"], clock() + timedelta(minutes=1), "")
    grant = (await flow.approve(BOB, str(late.id), None, ""))[2]
    assert grant is not None
    clock.advance(61)
    with pytest.raises(DomainError) as refused:
        await flow.claim(ALICE, str(grant.id))
    assert refused.value.reason == ErrorReason.ERROR_REASON_GRANT_NOT_ACTIVE


async def test_pending_requests_expire_after_their_ttl(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    runtime = await make_runtime(database_url, tmp_path, clock, access_pending_ttl=60)
    try:
        flow = AccessWorkflow(runtime)
        request = await flow.request_access(
            ALICE, ["catalog.read"], clock() + timedelta(hours=2), ""
        )
        clock.advance(61)
        with pytest.raises(DomainError) as refused:
            await flow.approve(BOB, str(request.id), None, "")
        assert refused.value.reason == ErrorReason.ERROR_REASON_REQUEST_NOT_PENDING
        assert await flow.expire_due() == 1
        row, _, _ = await flow.get_request(ALICE, str(request.id))
        assert row.status == "expired"
    finally:
        await runtime.database.dispose()


async def _tamper(runtime: Runtime, statement: str) -> None:
    async with runtime.database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            await connection.execute(text(statement))
            await connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:
            await connection.execute(text("DROP TRIGGER audit_events_no_update"))
            await connection.execute(text("DROP TRIGGER audit_events_no_delete"))
            await connection.execute(text(statement))


async def _chain(runtime: Runtime) -> AccessWorkflow:
    flow = AccessWorkflow(runtime)
    for _ in range(3):
        await flow.request_access(ALICE, ["catalog.read"], runtime.clock() + timedelta(hours=1), "")
    assert (await flow.verify_chain(BOB)).valid
    return flow


async def test_the_audit_log_refuses_edits_and_deletes(runtime: Runtime) -> None:
    await _chain(runtime)
    for statement in (
        "UPDATE audit_events SET actor = 'mallory' WHERE sequence = 2",
        "DELETE FROM audit_events WHERE sequence = 2",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with runtime.database.engine.begin() as connection:
                await connection.execute(text(statement))


async def test_verification_finds_an_edited_row(runtime: Runtime) -> None:
    flow = await _chain(runtime)
    await _tamper(runtime, "UPDATE audit_events SET actor = 'mallory' WHERE sequence = 2")
    check = await flow.verify_chain(BOB)
    assert (check.valid, check.first_invalid_sequence, check.problem) == (
        False,
        2,
        "hash mismatch",
    )


async def test_verification_finds_a_deleted_row(runtime: Runtime) -> None:
    flow = await _chain(runtime)
    await _tamper(runtime, "DELETE FROM audit_events WHERE sequence = 2")
    check = await flow.verify_chain(BOB)
    assert (check.valid, check.first_invalid_sequence, check.problem) == (
        False,
        2,
        "missing sequence",
    )


async def test_notifications_retry_until_delivered_without_blocking_the_workflow(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    hook = Webhook(failures=2)
    async with hook as url:
        runtime = await make_runtime(
            database_url, tmp_path, clock, webhook_urls=url, access_reminder_lead=300
        )
        try:
            flow = AccessWorkflow(runtime)
            dispatcher = WebhookDispatcher(runtime.database, clock)
            request = await flow.request_access(
                ALICE, ["catalog.read"], clock() + timedelta(hours=1), ""
            )
            assert await dispatcher.deliver_due() == 0  # the webhook answers 500
            assert await dispatcher.deliver_due() == 0  # not due again yet (backoff)
            clock.advance(3)
            assert await dispatcher.deliver_due() == 0  # second failure
            _, _, grant = await flow.approve(BOB, str(request.id), None, "")
            assert grant is not None  # the workflow never waited for the webhook
            clock.advance(10)
            assert await dispatcher.deliver_due() == 2
            delivered = {body["kind"]: body for body in hook.bodies}
            assert delivered["request_pending"]["recipient"] == "approvers"
            assert delivered["request_approved"]["recipient"] == "alice"
            assert delivered["request_approved"]["grant_id"] == str(grant.id)
            # The reminder waits until shortly before the grant ends.
            assert await dispatcher.deliver_due() == 0
            clock.advance((grant.ends_at - clock()).total_seconds() - 299)
            assert await dispatcher.deliver_due() == 1
            assert hook.bodies[-1]["kind"] == "grant_expiring"
            async with runtime.database.tenant_session(TENANT) as session:
                attempts = (
                    (
                        await session.execute(
                            select(NotificationRow.attempts).order_by(NotificationRow.created_at)
                        )
                    )
                    .scalars()
                    .all()
                )
            assert attempts == [3, 1, 1]
        finally:
            await runtime.database.dispose()


async def test_an_unreachable_webhook_is_recorded_not_raised(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    runtime = await make_runtime(
        database_url, tmp_path, clock, webhook_urls="http://127.0.0.1:9/nowhere"
    )
    try:
        await AccessWorkflow(runtime).request_access(
            ALICE, ["catalog.read"], clock() + timedelta(hours=1), ""
        )
        assert await WebhookDispatcher(runtime.database, clock).deliver_due() == 0
        async with runtime.database.tenant_session(TENANT) as session:
            row = (await session.execute(select(NotificationRow))).scalar_one()
        assert row.attempts == 1
        assert "ConnectError" in row.last_error
    finally:
        await runtime.database.dispose()


async def test_the_outbox_refuses_what_would_shadow_its_envelope(runtime: Runtime) -> None:
    outbox = Outbox(("http://127.0.0.1:9/nowhere",))
    now = runtime.clock()
    async with runtime.database.tenant_session(TENANT) as session:
        with pytest.raises(ValueError, match="the envelope's keys"):
            outbox.notify(session, "billing_alert", TENANT, {"kind": "x"}, recipient="o", at=now)
        with pytest.raises(ValueError, match="longer than 32"):
            outbox.notify(session, "x" * 33, TENANT, {}, recipient="o", at=now)
        assert list(session.new) == []


async def test_revocations_reach_other_replicas(runtime: Runtime, redis_url: str) -> None:
    flow = AccessWorkflow(runtime)
    request = await flow.request_access(
        ALICE, ["catalog.read"], runtime.clock() + timedelta(hours=1), ""
    )
    _, _, grant = await flow.approve(BOB, str(request.id), None, "")
    assert grant is not None
    # Two other replicas: one listening on Redis, one only polling the table.
    listening = InMemoryRevocations()
    polling = InMemoryRevocations()
    listener_feed = RevocationFeed(runtime.database, listening, redis_url=redis_url)
    poller_feed = RevocationFeed(runtime.database, polling)
    announcing = RevocationFeed(runtime.database, InMemoryRevocations(), redis_url=redis_url)
    runtime_with_redis = Runtime(
        settings=runtime.settings,
        database=runtime.database,
        keys=runtime.keys,
        engine=runtime.engine,
        components=(AccessComponent(announcing, Outbox(())),),
        clock=runtime.clock,
    )
    listener = asyncio.create_task(listener_feed.listen())
    try:
        await asyncio.sleep(0.2)  # subscribed
        await AccessWorkflow(runtime_with_redis).revoke(ALICE, str(grant.id), "done")
        for _ in range(100):
            if listening.is_revoked(grant.jti):
                break
            await asyncio.sleep(0.01)
        assert listening.is_revoked(grant.jti)
        assert not polling.is_revoked(grant.jti)
        assert await poller_feed.refresh() == 1
        assert polling.is_revoked(grant.jti)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        for feed in (listener_feed, poller_feed, announcing):
            await feed.close()
    async with runtime.database.tenant_session(TENANT) as session:
        revoked = (await session.execute(select(RevocationRow))).scalar_one()
    assert revoked.expires_at == grant.ends_at


# -- property tests ------------------------------------------------------------------

SUBJECTS = ("alice", "bob", "carol")
ADMINS = {"bob", "carol"}


class AccessMachine(RuleBasedStateMachine):
    """Random sequences of request/approve/deny/claim/revoke/expire/clock moves (on SQLite)."""

    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.directory.name}/store.db"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.TemporaryDirectory()
        self.clock = Clock()
        self.runtime = self.run(
            make_runtime(self.database_url(), Path(self.directory.name), self.clock)
        )
        self.flow = AccessWorkflow(self.runtime)
        self.requests: list[str] = []
        self.grants: list[str] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def who(self, subject: str) -> Principal:
        scopes = ["admin.write"] if subject in ADMINS else ["catalog.read"]
        return principal(TENANT, subject, scopes)

    def attempt(self, coroutine: Any) -> Any:
        try:
            return self.run(coroutine)
        except DomainError as error:
            return error

    @initialize()
    def start(self) -> None:
        pass

    @rule(
        subject=strategies.sampled_from(SUBJECTS),
        scope=strategies.sampled_from(
            [["catalog.read"], ["rag.read", "edge.read"], ["billing.write"]]
        ),
        minutes=strategies.integers(min_value=1, max_value=600),
    )
    def request(self, subject: str, scope: list[str], minutes: int) -> None:
        outcome = self.attempt(
            self.flow.request_access(
                self.who(subject), scope, self.clock() + timedelta(minutes=minutes), "because"
            )
        )
        if isinstance(outcome, AccessRequestRow):
            self.requests.append(str(outcome.id))

    @rule(
        data=strategies.data(),
        approver=strategies.sampled_from(sorted(ADMINS)),
        shorten=strategies.one_of(strategies.none(), strategies.integers(1, 36000)),
        approve=strategies.booleans(),
    )
    def review(
        self, data: strategies.DataObject, approver: str, shorten: int | None, approve: bool
    ) -> None:
        if not self.requests:
            return
        request_id = data.draw(strategies.sampled_from(self.requests))
        row, _, _ = self.run(self.flow.get_request(self.who("bob"), request_id))
        if approve:
            ends = None if shorten is None else self.clock() + timedelta(seconds=shorten)
            outcome = self.attempt(self.flow.approve(self.who(approver), request_id, ends, ""))
        else:
            outcome = self.attempt(self.flow.deny(self.who(approver), request_id, ""))
        if approver == row.requester:
            assert isinstance(outcome, DomainError)
            assert outcome.reason == ErrorReason.ERROR_REASON_SELF_APPROVAL
        if approve and isinstance(outcome, tuple) and outcome[2] is not None:
            self.grants.append(str(outcome[2].id))

    @rule(data=strategies.data(), subject=strategies.sampled_from(SUBJECTS))
    def claim(self, data: strategies.DataObject, subject: str) -> None:
        if not self.grants:
            return
        grant_id = data.draw(strategies.sampled_from(self.grants))
        outcome = self.attempt(self.flow.claim(self.who(subject), grant_id))
        if isinstance(outcome, DomainError):
            return
        grant = outcome.grant
        claims = jwt.decode(outcome.token, options={"verify_signature": False})
        # Never a live token past its grant: it was claimable only while active and
        # before its end, and it dies exactly then.
        assert grant.status == "active"
        assert self.clock() < grant.ends_at
        assert claims["exp"] == int(grant.ends_at.timestamp())
        assert claims["sub"] == grant.grantee == subject
        assert claims["jit"] is True

    @rule(data=strategies.data(), subject=strategies.sampled_from(SUBJECTS))
    def revoke(self, data: strategies.DataObject, subject: str) -> None:
        if self.grants:
            grant_id = data.draw(strategies.sampled_from(self.grants))
            self.attempt(self.flow.revoke(self.who(subject), grant_id, ""))

    @rule()
    def expire(self) -> None:
        self.run(self.flow.expire_due())

    @rule(seconds=strategies.integers(min_value=1, max_value=7200))
    def tick(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def the_audit_chain_verifies(self) -> None:
        assert self.run(self.flow.verify_chain(self.who("bob"))).valid

    @invariant()
    def grants_respect_their_request_and_reviews(self) -> None:
        async def check() -> None:
            async with self.runtime.database.tenant_session(TENANT) as session:
                rows = (
                    await session.execute(
                        select(GrantRow, AccessRequestRow).join(
                            AccessRequestRow, GrantRow.request_id == AccessRequestRow.id
                        )
                    )
                ).all()
                self_reviews = await session.scalar(
                    select(func.count())
                    .select_from(ReviewRow)
                    .join(AccessRequestRow, ReviewRow.request_id == AccessRequestRow.id)
                    .where(ReviewRow.reviewer == AccessRequestRow.requester)
                )
                revoked_without_record = await session.scalar(
                    select(func.count())
                    .select_from(GrantRow)
                    .outerjoin(RevocationRow, RevocationRow.jti == GrantRow.jti)
                    .where(GrantRow.status == "revoked", RevocationRow.jti.is_(None))
                )
            assert self_reviews == 0
            assert revoked_without_record == 0
            for grant, request in rows:
                assert grant.grantee == request.requester
                assert grant.ends_at <= request.expires_at
                assert grant.ends_at <= grant.starts_at + timedelta(seconds=request.max_duration_s)

        self.run(check())

    def teardown(self) -> None:
        self.run(self.runtime.database.dispose())
        self.loop.close()
        self.directory.cleanup()


class AccessMachineOnPostgres(AccessMachine):
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


PROPERTY_SETTINGS = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAccessProperties = pytest.mark.slow(AccessMachine.TestCase)
TestAccessProperties.settings = PROPERTY_SETTINGS
TestAccessPropertiesOnPostgres = pytest.mark.slow(
    pytest.mark.postgres(
        pytest.mark.skipif(not POSTGRES_URL, reason=POSTGRES_SKIP_REASON)(
            AccessMachineOnPostgres.TestCase
        )
    )
)
TestAccessPropertiesOnPostgres.settings = PROPERTY_SETTINGS


async def test_the_exported_audit_log_verifies_offline(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    runtime = await make_runtime(database_url, tmp_path, clock)
    try:
        flow = AccessWorkflow(runtime)
        request = await flow.request_access(
            ALICE, ["catalog.read"], clock() + timedelta(hours=1), ""
        )
        await flow.approve(BOB, str(request.id), None, "")
    finally:
        await runtime.database.dispose()
    out = tmp_path / "audit.jsonl"
    exported = await asyncio.to_thread(
        main,
        [
            "audit",
            "export",
            "--tenant",
            str(TENANT),
            "--out",
            str(out),
            "--database-url",
            database_url,
        ],
    )
    assert exported == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["action"] for line in lines] == ["request", "review", "approve", "mint"]
    assert verify_chain([facts_from_line(line) for line in lines]).valid
    lines[1]["actor"] = "mallory"
    tampered = verify_chain([facts_from_line(line) for line in lines])
    assert (tampered.valid, tampered.first_invalid_sequence) == (False, 2)
