"""Backout switches: set once, seen by every replica within a second, every change kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servers.db import Database
from servers.db.migrate import upgrade
from servers.switches import (
    ANALYTICS_REMOVED_PACKS,
    EDGE_COALESCING,
    POLL_S,
    SWITCHES,
    SwitchBoard,
    UnfitValue,
    UnknownSwitch,
)
from tests.support.serving import serving

pytestmark = pytest.mark.asyncio


async def test_a_switch_set_on_one_board_is_seen_by_another_at_its_next_look(
    database: Database,
) -> None:
    await upgrade(database.engine)
    here, there = SwitchBoard(database), SwitchBoard(database)
    await there.refresh()
    assert there.is_on(EDGE_COALESCING)
    await here.set(EDGE_COALESCING, "off", changed_by="ops-1", reason="origin overload")
    assert not here.is_on(EDGE_COALESCING)  # the setter at once
    assert await there.refresh()
    assert not there.is_on(EDGE_COALESCING)
    assert not await there.refresh()  # nothing new: one cheap read
    await here.set(ANALYTICS_REMOVED_PACKS, "analytics.pagerank:v1,analytics.degreeTop:v1",
                   changed_by="ops-1", reason="slow")  # fmt: skip
    await there.refresh()
    assert there.removed_packs() == frozenset({"analytics.pagerank:v1", "analytics.degreeTop:v1"})
    await here.set(ANALYTICS_REMOVED_PACKS, "*", changed_by="ops-2", reason="all out")
    await there.refresh()
    assert there.removed_packs() is None
    states = {state.switch.name: state for state in await there.states()}
    assert set(states) == set(SWITCHES)
    assert (states[EDGE_COALESCING].value, states[EDGE_COALESCING].changed_by) == ("off", "ops-1")
    history = await there.history(ANALYTICS_REMOVED_PACKS)
    assert [(change.old_value, change.new_value, change.changed_by) for change in history] == [
        ("analytics.pagerank:v1,analytics.degreeTop:v1", "*", "ops-2"),
        ("", "analytics.pagerank:v1,analytics.degreeTop:v1", "ops-1"),
    ]


async def test_unknown_switches_and_unfit_values_are_refused_and_nothing_is_written(
    database: Database,
) -> None:
    await upgrade(database.engine)
    board = SwitchBoard(database)
    with pytest.raises(UnknownSwitch, match=r"edge\.coalescing"):
        await board.set("edge.coalesce", "off", changed_by="ops", reason="typo")
    for name, value in ((EDGE_COALESCING, "maybe"), (ANALYTICS_REMOVED_PACKS, "a b")):
        with pytest.raises(UnfitValue):
            await board.set(name, value, changed_by="ops", reason="bad")
    assert await board.history() == []


async def test_two_replicas_follow_a_switch_within_a_second(tmp_path: Path) -> None:
    async with (
        serving(tmp_path / "var", services="access") as first,
        serving(tmp_path / "var", services="access") as second,
    ):
        assert second.switches.is_on(EDGE_COALESCING)
        await first.switches.set(EDGE_COALESCING, "off", changed_by="ops", reason="drill")
        async with asyncio.timeout(1.0):
            while second.switches.is_on(EDGE_COALESCING):  # noqa: ASYNC110 - polled by design
                await asyncio.sleep(POLL_S / 5)
