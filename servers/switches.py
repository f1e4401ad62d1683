"""Backout switches: the seed's backout plan as switches that hold on every replica within a second.

Each switch backs one lane out without a deploy: JIT claims off, edge coalescing off,
what-if sharing hidden, analytics packs removed (some or all), Rag purposes held at an
earlier template version. (Freezing a tenant's billing to pilot is Billing's own
`SetRollout`, per tenant.) A switch is set by an administrator, with a
reason, and every change is kept with who made it and when (`servers.db.switches`).
Every replica keeps the values in memory and looks at the store's version of them every
`POLL_S` seconds, so a change holds everywhere within a second; services read them from
`Runtime.switches` at no cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from servers.db import Database, utc_now
from servers.db import switches as store

#: Seconds between two looks at the store's version of the switches.
POLL_S = 0.5

JIT_CLAIMS = "access.jit_claims"
EDGE_COALESCING = "edge.coalescing"
WHATIF_SHARING = "catalog.whatif_sharing"
ANALYTICS_REMOVED_PACKS = "analytics.removed_packs"
RAG_SUMMARY_TEMPLATES = "rag.summary_templates"

_ON_OFF = frozenset({"on", "off"})
_PACKS = re.compile(r"\*|[A-Za-z0-9_.:-]{1,64}(,[A-Za-z0-9_.:-]{1,64}){0,31}")
_PINS = re.compile(r"[a-z0-9-]{1,64}:[1-9][0-9]{0,8}(,[a-z0-9-]{1,64}:[1-9][0-9]{0,8}){0,31}")


def _on_off(value: str) -> str | None:
    return None if value in _ON_OFF else "is on or off"


def _packs(value: str) -> str | None:
    if value == "" or _PACKS.fullmatch(value):
        return None
    return 'is "" (none), "*" (all) or comma-separated pack ids'


def _pins(value: str) -> str | None:
    if value == "" or _PINS.fullmatch(value):
        return None
    return 'is "" (none) or comma-separated purpose:version pins, e.g. "support:1"'


@dataclass(frozen=True)
class Switch:
    """One switch: what it backs out, its default, the values it takes.

    Attributes:
        name: "edge.coalescing".
        description: What it does, for `conductor switch list` and ListSwitches.
        default: Its value until set.
        problem: Says what is wrong with a value (None: the value is fit).
    """

    name: str
    description: str
    default: str
    problem: Callable[[str], str | None]


SWITCHES: dict[str, Switch] = {
    switch.name: switch
    for switch in (
        Switch(
            JIT_CLAIMS,
            "off: approved grants can no longer be claimed for a JIT token (ClaimGrant refused).",
            "on",
            _on_off,
        ),
        Switch(
            EDGE_COALESCING,
            "off: concurrent identical cache misses each call the services (no coalescing).",
            "on",
            _on_off,
        ),
        Switch(
            WHATIF_SHARING,
            "off: what-if scenarios can no longer be saved or opened by their share id.",
            "on",
            _on_off,
        ),
        Switch(
            ANALYTICS_REMOVED_PACKS,
            'Packs taken out of ListPacks and refused by RunPack: "" none, "*" all, or ids.',
            "",
            _packs,
        ),
        Switch(
            RAG_SUMMARY_TEMPLATES,
            "Purposes held at an earlier template version where a request asks for the current "
            'one, e.g. "support:1"; "" none.',
            "",
            _pins,
        ),
    )
}


class UnknownSwitch(ValueError):
    """No switch has that name."""


class UnfitValue(ValueError):
    """The value is not one the switch takes."""


@dataclass(frozen=True)
class SwitchState:
    """Where a switch stands, and its last change (None: never set, at its default)."""

    switch: Switch
    value: str
    changed_at: datetime | None = None
    changed_by: str = ""
    reason: str = ""


class SwitchBoard:
    """This process's view of the switches, kept in step with the store.

    Args:
        database: The store.
        clock: The current time (aware UTC).
    """

    def __init__(self, database: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._database = database
        self._clock = clock
        self._values: dict[str, str] = {}
        self._version = -1
        self._checks: dict[str, list[Callable[[str], str | None]]] = {}

    def add_check(self, name: str, check: Callable[[str], str | None]) -> None:
        """Have the service a switch backs out also check its values (a pack id exists, say).

        Registered where that service is served: a replica serving it refuses what it
        knows is unfit; one that does not checks the value's form only.
        """
        self._checks.setdefault(name, []).append(check)

    def value(self, name: str) -> str:
        """The switch's value now (its default until set)."""
        return self._values.get(name, SWITCHES[name].default)

    def is_on(self, name: str) -> bool:
        """Whether an on/off switch is on."""
        return self.value(name) == "on"

    def removed_packs(self) -> frozenset[str] | None:
        """The analytics packs backed out: None for all of them."""
        value = self.value(ANALYTICS_REMOVED_PACKS)
        if value == "*":
            return None
        return frozenset(part for part in value.split(",") if part)

    def pinned_templates(self) -> dict[str, int]:
        """Purposes held at an earlier template version: purpose → version."""
        value = self.value(RAG_SUMMARY_TEMPLATES)
        pins = (pin.split(":") for pin in value.split(",") if pin)
        return {purpose: int(version) for purpose, version in pins}

    async def refresh(self) -> bool:
        """Read the switches again if they changed since last read; True if they did."""
        async with self._database.platform_session(readonly=True) as session:
            version = await store.version(session)
            if version == self._version:
                return False
            rows = await store.current(session)
        self._values = {row.name: row.value for row in rows if row.name in SWITCHES}
        self._version = version
        return True

    async def set(self, name: str, value: str, *, changed_by: str, reason: str) -> SwitchState:
        """Set a switch for every replica (this one at once), keeping the change.

        Raises:
            UnknownSwitch: No switch has that name.
            UnfitValue: The switch does not take `value`.
        """
        switch = SWITCHES.get(name)
        if switch is None:
            raise UnknownSwitch(f"no switch is named {name!r}; the switches: {', '.join(SWITCHES)}")
        problem = switch.problem(value)
        for check in self._checks.get(name, ()):
            problem = problem or check(value)
        if problem is not None:
            raise UnfitValue(f"{name} {problem}, not {value!r}")
        at = self._clock()
        async with self._database.platform_session() as session:
            await store.set_value(
                session,
                name,
                value,
                default=switch.default,
                changed_by=changed_by,
                reason=reason,
                at=at,
            )
        await self.refresh()
        return SwitchState(switch, value, at, changed_by, reason)

    async def states(self) -> list[SwitchState]:
        """Every switch, as the store has it now."""
        async with self._database.platform_session(readonly=True) as session:
            rows = {row.name: row for row in await store.current(session)}
        states = []
        for name, switch in SWITCHES.items():
            row = rows.get(name)
            states.append(
                SwitchState(switch, row.value, row.changed_at, row.changed_by, row.reason)
                if row is not None
                else SwitchState(switch, switch.default)
            )
        return states

    async def history(
        self, name: str | None = None, *, before: int | None = None, limit: int = 1000
    ) -> Sequence[store.SwitchChangeRow]:
        """The changes, newest first (of one switch, when named; older than change `before`)."""
        async with self._database.platform_session(readonly=True) as session:
            return await store.changes(session, name, before=before, limit=limit)
