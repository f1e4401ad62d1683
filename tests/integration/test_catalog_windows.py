"""SLO windows against a clock the test moves: incidents age out, calendar periods reset."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio

from servers.catalog.entities import Entities
from servers.catalog.objectives import Objectives, RecordedMinute
from servers.catalog.specs import EntitySpec, SloSpec, WindowSpec
from servers.config import load_settings
from servers.db import Database
from servers.db.migrate import upgrade
from servers.runtime import Runtime
from tests.support.clocks import Clock
from tests.support.principals import principal

CALLER = principal(uuid.uuid4(), "alice", ["catalog.read", "catalog.write"])


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 30, 12, 0, tzinfo=UTC))


@pytest_asyncio.fixture
async def objectives(
    database_url: str, tmp_path: Path, clock: Clock
) -> AsyncIterator[tuple[Entities, Objectives]]:
    database = Database(database_url)
    await upgrade(database.engine)
    runtime = Runtime(
        settings=load_settings(var_dir=tmp_path, grpc_port=0, http_port=0),
        database=database,
        keys=cast(Any, None),  # neither is used by the catalog's use cases
        engine=cast(Any, None),
        clock=clock,
    )
    entities = Entities(runtime)
    yield entities, Objectives(runtime, entities)
    await database.dispose()


async def incident(objectives: Objectives, at: datetime, minutes: int = 30) -> None:
    """`minutes` minutes of 50% errors at 1,000 requests a minute, ending at `at`."""
    start = at.replace(second=0, microsecond=0) - timedelta(minutes=minutes)
    await objectives.record(
        CALLER,
        "api",
        "availability",
        [RecordedMinute(start + timedelta(minutes=m), 500, 1000) for m in range(minutes)],
    )


async def test_a_rolling_window_returns_to_full_once_the_incident_ages_out(
    objectives: tuple[Entities, Objectives], clock: Clock
) -> None:
    entities, slos = objectives
    await entities.create(
        CALLER,
        EntitySpec(
            "component", "api", slos=(SloSpec("availability", 0.999, window=WindowSpec(7)),)
        ),
    )
    await incident(slos, clock.now)
    during = await slos.status(CALLER, "api")
    assert during.budget.attainment == 0.5
    firing = {(a.policy.long_window_seconds, a.firing) for a in during.alerts}
    assert (3600, True) in firing
    # Two hours on, the pages' short windows (5 and 30 minutes) have reset them; the
    # ticket's 6 h short window still holds the incident, so only the ticket fires.
    clock.advance(2 * 3600)
    later = await slos.status(CALLER, "api")
    assert {a.policy.long_window_seconds for a in later.alerts if a.firing} == {259200}
    assert later.budget.attainment == 0.5
    clock.advance(7 * 86400)  # past the 7-day window: nothing left in it
    after = await slos.status(CALLER, "api")
    assert after.budget.attainment == 1.0
    assert after.budget.consumed == 0.0
    assert after.budget.remaining == 1.0
    assert not any(alert.firing for alert in after.alerts)
    assert after.budget.exhaustion_seconds is None


async def test_a_calendar_month_resets_at_its_start(
    objectives: tuple[Entities, Objectives], clock: Clock
) -> None:
    entities, slos = objectives
    monthly = SloSpec("availability", 0.99, window=WindowSpec(calendar="month"))
    await entities.create(CALLER, EntitySpec("component", "api", slos=(monthly,)))
    await incident(slos, clock.now)
    march = await slos.status(CALLER, "api")
    assert march.window_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert march.window_end == datetime(2026, 4, 1, tzinfo=UTC)
    assert march.budget.window_seconds == 31 * 86400
    assert march.budget.bad_events == 15_000
    assert len(march.daily_consumed) == 30  # 1 March to today, 30 March
    assert sum(march.daily_consumed) == pytest.approx(march.budget.consumed)
    clock.advance(3 * 86400)  # 2 April: a new month, a new budget
    april = await slos.status(CALLER, "api")
    assert april.window_start == datetime(2026, 4, 1, tzinfo=UTC)
    assert april.budget.window_seconds == 30 * 86400
    assert april.budget.total_events == 0
    assert april.budget.remaining == 1.0


async def test_timeslices_count_bad_slices_not_bad_events(
    objectives: tuple[Entities, Objectives], clock: Clock
) -> None:
    entities, slos = objectives
    sliced = SloSpec(
        "availability",
        0.99,
        window=WindowSpec(1),
        budgeting_method="timeslices",
        timeslice_target=0.95,
        timeslice_minutes=5,
    )
    await entities.create(CALLER, EntitySpec("component", "api", slos=(sliced,)))
    start = clock.now.replace(minute=0) - timedelta(hours=1)
    minutes = [
        # 12 slices of 5 minutes; the 3rd has one terrible minute (its slice: 4,000/5,000 good).
        RecordedMinute(start + timedelta(minutes=m), 0 if m == 12 else 1000, 1000)
        for m in range(60)
    ]
    await slos.record(CALLER, "api", "availability", minutes)
    status = await slos.status(CALLER, "api")
    assert status.budget.total_events == 12  # slices with events
    assert status.budget.bad_events == 1
    assert status.budget.attainment == pytest.approx(11 / 12)
