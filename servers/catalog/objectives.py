"""SLOs at work: recording their events, their status over the window, their alert rules.

Events are counted per minute (minutes since the epoch, UTC). An SLO's status
sums them over its window — the last N days for a rolling window, so incidents
age out and attainment climbs back to 100%; the calendar period so far for a
calendar window — and over each alerting window of the workbook's policies,
whose burn rates say which alert fires. Timeslice SLOs count slices instead of
events: a slice with events is bad when its good ratio falls below the
timeslice target.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidArgument, NotFound, quoted
from interceptors.tokens import Principal
from servers.catalog import store
from servers.catalog.alerting import render_rules, slo_rules
from servers.catalog.budgets import (
    ALERT_WINDOWS_SECONDS,
    BudgetReport,
    BurnAlert,
    budget_report,
    error_budget,
    evaluate_burn_alerts,
    policies_for,
)
from servers.catalog.entities import Entities, spec_of
from servers.catalog.specs import TIMESLICES, EntitySpec, SloSpec, WindowSpec
from servers.runtime import Runtime

_MINUTE = 60
_DAY_MINUTES = 1440
#: The window whose burn rate is "current": exhaustion is reckoned at it.
CURRENT_WINDOW_SECONDS = 3600
#: Recorded minutes may lie this far ahead of the clock (clock skew).
_FUTURE_MINUTES = 5
#: Events older than the longest window are of no use.
RETENTION = timedelta(days=401)


def minute_of(moment: datetime) -> int:
    """Minutes since the epoch of the minute holding `moment`."""
    return int(moment.timestamp()) // _MINUTE


def minute_start(minute: int) -> datetime:
    """The instant minute `minute` begins."""
    return datetime.fromtimestamp(minute * _MINUTE, UTC)


@dataclass(frozen=True)
class WindowRate:
    """The error ratio and burn rate over one alerting window."""

    window_seconds: int
    total: int
    bad: int
    error_ratio: float
    burn_rate: float


@dataclass(frozen=True)
class SloStatus:
    """An SLO's state over its window at one moment."""

    entity: str
    slo: SloSpec
    window_start: datetime
    window_end: datetime
    budget: BudgetReport
    rates: tuple[WindowRate, ...]
    alerts: tuple[BurnAlert, ...]
    #: Share of the window's budget spent each day, oldest first.
    daily_consumed: tuple[float, ...]


@dataclass(frozen=True)
class RecordedMinute:
    """Events of one minute as a caller sends them."""

    minute: datetime
    good: int
    total: int


def _check_minutes(minutes: Sequence[RecordedMinute], now: datetime) -> list[tuple[int, int, int]]:
    latest = minute_of(now) + _FUTURE_MINUTES
    earliest = minute_of(now - RETENTION)
    seen: set[int] = set()
    rows = []
    for index, recorded in enumerate(minutes):
        field_path = f"minutes[{index}]"
        moment = recorded.minute
        if moment.second or moment.microsecond:
            raise InvalidArgument(
                f"{field_path}.minute must be the start of a minute", field=f"{field_path}.minute"
            )
        minute = minute_of(moment)
        if not earliest <= minute <= latest:
            raise InvalidArgument(
                f"{field_path}.minute must lie within the last 401 days, not ahead of the clock",
                field=f"{field_path}.minute",
            )
        if minute in seen:
            raise InvalidArgument(
                f"{field_path}.minute is sent twice in one request", field=f"{field_path}.minute"
            )
        seen.add(minute)
        if not 0 <= recorded.good <= recorded.total:
            raise InvalidArgument(
                f"{field_path}: good_events must lie between 0 and total_events",
                field=f"{field_path}.good_events",
            )
        rows.append((minute, recorded.good, recorded.total))
    return rows


def thresholds(objective: float, window_seconds: int) -> list[BurnAlert]:
    """The workbook's alerts for an SLO, with their thresholds and nothing burning."""
    return evaluate_burn_alerts(
        objective,
        window_seconds,
        dict.fromkeys(ALERT_WINDOWS_SECONDS, 0.0),
        policies_for(window_seconds),
    )


def _slo_of(spec: EntitySpec, name: str) -> SloSpec:
    slo = spec.slo(name)
    if slo is None:
        what = f"SLO called {quoted(name)}" if name else "SLO"
        raise NotFound(f"entity {quoted(spec.name)} has no {what}", metadata={"slo": name})
    return slo


class _Counter:
    """Counts an SLO's (total, bad) over minute ranges: events, or time slices."""

    def __init__(self, session: AsyncSession, entity_id: uuid.UUID, slo: SloSpec) -> None:
        self._session = session
        self._entity_id = entity_id
        self._slo = slo
        self.sliced = slo.budgeting_method == TIMESLICES

    async def counts(self, since: int, until: int) -> tuple[int, int]:
        if self.sliced:
            return await store.slice_counts(
                self._session,
                self._entity_id,
                self._slo.name,
                since,
                until,
                slice_minutes=self._slo.timeslice_minutes,
                target=self._slo.slice_target,
            )
        return await store.event_counts(
            self._session, self._entity_id, self._slo.name, since, until
        )

    async def daily(self, since: int, until: int) -> dict[int, tuple[int, int]]:
        return await store.daily_counts(
            self._session,
            self._entity_id,
            self._slo.name,
            since,
            until,
            slice_minutes=self._slo.timeslice_minutes if self.sliced else 0,
            target=self._slo.slice_target,
        )


def window_minutes(window: WindowSpec, now: datetime) -> tuple[int, int, int]:
    """(since, until, length) in minutes of the window holding `now`.

    A rolling window ends with the current minute; a calendar one covers its
    period so far (`until`) of its full `length`.
    """
    if not window.calendar:
        until = minute_of(now) + 1
        length = window.rolling_days * _DAY_MINUTES
        return until - length, until, length
    start, end = window.bounds(now)
    return minute_of(start), minute_of(now) + 1, minute_of(end) - minute_of(start)


async def slo_status(
    session: AsyncSession, entity_id: uuid.UUID, entity: str, slo: SloSpec, now: datetime
) -> SloStatus:
    """The SLO's status at `now`, from the minutes recorded (in `session`'s tenant)."""
    counter = _Counter(session, entity_id, slo)
    since, until, length = window_minutes(slo.window, now)
    total, bad = await counter.counts(since, until)
    budget = error_budget(slo.objective)
    rates = []
    for seconds in ALERT_WINDOWS_SECONDS:
        window_total, window_bad = await counter.counts(until - seconds // _MINUTE, until)
        ratio = window_bad / window_total if window_total else 0.0
        rates.append(WindowRate(seconds, window_total, window_bad, ratio, ratio / budget))
    current = next(rate for rate in rates if rate.window_seconds == CURRENT_WINDOW_SECONDS)
    elapsed = min(until - since, length)
    report = budget_report(
        slo.objective,
        length * _MINUTE,
        total,
        bad,
        elapsed_seconds=elapsed * _MINUTE,
        current_burn_rate=current.burn_rate if current.total else None,
    )
    alerts = evaluate_burn_alerts(
        slo.objective,
        length * _MINUTE,
        {rate.window_seconds: rate.error_ratio for rate in rates},
        policies_for(length * _MINUTE),
    )
    days = await counter.daily(since, until)
    allowed = report.allowed_bad_events
    first_day, last_day = since // _DAY_MINUTES, (until - 1) // _DAY_MINUTES
    daily = tuple(
        (days.get(day, (0, 0))[1] / allowed) if allowed else 0.0
        for day in range(first_day, last_day + 1)
    )
    return SloStatus(
        entity=entity,
        slo=slo,
        window_start=minute_start(since),
        window_end=minute_start(since + length),
        budget=report,
        rates=tuple(rates),
        alerts=tuple(alerts),
        daily_consumed=daily,
    )


class Objectives:
    """SLO events, status and alert rules, for every tenant."""

    def __init__(self, runtime: Runtime, entities: Entities) -> None:
        self._db = runtime.database
        self._clock = runtime.clock
        self._entities = entities

    async def record(
        self, principal: Principal, entity: str, slo: str, minutes: Sequence[RecordedMinute]
    ) -> int:
        """Set the counts of `minutes` of an SLO; returns how many were written.

        Raises:
            InvalidArgument: A minute is not whole, out of range, repeated, or its
                counts are inconsistent.
            NotFound: No such entity or SLO.
        """
        rows = _check_minutes(minutes, self._clock())
        async with self._db.tenant_session(principal.tenant) as session:
            row = await store.entity(session, entity)
            if row is None:
                raise NotFound(f"no entity is called {quoted(entity)}", metadata={"name": entity})
            _slo_of(spec_of(row), slo)
            await store.put_minutes(session, principal.tenant, row.id, slo, rows)
        return len(rows)

    async def forget_old_events(self) -> None:
        """Forget every tenant's events older than any window reaches (a platform job)."""
        async with self._db.platform_session() as session:
            await store.drop_minutes_before(session, minute_of(self._clock() - RETENTION))

    async def status(self, principal: Principal, entity: str, slo: str = "") -> SloStatus:
        """The status of an entity's SLO (its first when `slo` is empty) now.

        Raises:
            NotFound: No such entity or SLO.
        """
        now = self._clock()
        async with self._db.tenant_session(principal.tenant, readonly=True) as session:
            row = await store.entity(session, entity)
            if row is None:
                raise NotFound(f"no entity is called {quoted(entity)}", metadata={"name": entity})
            spec = _slo_of(spec_of(row), slo)
            return await slo_status(session, row.id, row.name, spec, now)

    async def alert_rules(
        self, principal: Principal, entity: str, slo: str = "", runbook_url: str = ""
    ) -> tuple[str, list[BurnAlert]]:
        """A Prometheus rule file for the entity's measurable SLOs (or the one named).

        Returns:
            The file (YAML) and, per SLO, its alerts' thresholds.

        Raises:
            NotFound: No such entity or SLO.
            InvalidArgument: No SLO has an indicator to alert on.
        """
        spec = spec_of(await self._entities.get(principal, entity))
        chosen = [_slo_of(spec, slo)] if slo else list(spec.slos)
        if runbook_url and urlsplit(runbook_url).scheme not in ("http", "https"):
            raise InvalidArgument("runbook_url must be an http or https URL", field="runbook_url")
        measurable = [candidate for candidate in chosen if candidate.indicator.measurable]
        if not measurable:
            raise InvalidArgument(
                f"entity {quoted(entity)} has no SLO with an indicator's queries to alert on",
                field="slo",
            )
        groups = []
        alerts: list[BurnAlert] = []
        for objective in measurable:
            groups.extend(slo_rules(spec.name, objective, runbook_url)["groups"])
            alerts.extend(thresholds(objective.objective, objective.window.seconds()))
        return render_rules({"groups": groups}), alerts
