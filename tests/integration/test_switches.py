"""Backout switches: set once, seen by every replica within a second, every change kept."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.common.v1.pagination_pb2 import PageRequest
from intelgraph.sdk import (
    INSECURE,
    AsyncClient,
    FailedPreconditionError,
    InvalidArgumentError,
    PermissionDeniedError,
    upload_document_async,
)

from servers.app import Platform
from servers.db import Database
from servers.db.migrate import upgrade
from servers.edge.layer import EdgeLayer
from servers.switches import (
    ANALYTICS_REMOVED_PACKS,
    EDGE_COALESCING,
    JIT_CLAIMS,
    POLL_S,
    RAG_SUMMARY_TEMPLATES,
    SWITCHES,
    WHATIF_SHARING,
    SwitchBoard,
    UnfitValue,
    UnknownSwitch,
)
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio

TENANT = uuid.UUID("3e1d5c7b-9a2f-4b6d-8c0e-1f2a3b4c5d6e")


def until(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return stamp


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


async def test_set_through_one_replica_the_other_refuses_jit_claims_within_a_second(
    tmp_path: Path,
) -> None:
    async with (
        serving(tmp_path / "var", services="access,edge") as first,
        serving(tmp_path / "var", services="access,edge") as second,
        contextlib.AsyncExitStack() as closing,
    ):
        minter = Minter(first.settings)

        async def sdk(platform: Platform, scopes: list[str], subject: str) -> AsyncClient:
            token = minter(scopes, tenant=TENANT, subject=subject)
            return await closing.enter_async_context(
                AsyncClient(platform.grpc_target, INSECURE, token=lambda: token)
            )

        admin = await sdk(first, ["platform.admin"], "ops")
        bob = await sdk(second, [], "bob")
        alice = await sdk(first, ["admin.write"], "alice")
        asked = await bob.access.request_access(scope=["catalog.read"], expires_at=until(3600))
        approved = await alice.access.approve_access(id=asked.access_request.id)
        set_off = await admin.access.set_switch(
            name=JIT_CLAIMS, value="off", reason="JIT incident drill"
        )
        assert (set_off.state.value, set_off.state.changed_by) == ("off", "ops")
        async with asyncio.timeout(1.0):
            while second.switches.is_on(JIT_CLAIMS):  # noqa: ASYNC110 - polled by design
                await asyncio.sleep(POLL_S / 5)
        with pytest.raises(FailedPreconditionError) as refused:
            await bob.access.claim_grant(grant_id=approved.grant.id)
        assert refused.value.metadata["switch"] == JIT_CLAIMS
        await admin.access.set_switch(name=JIT_CLAIMS, value="on", reason="drill over")
        await admin.access.set_switch(name=EDGE_COALESCING, value="off", reason="drill")
        async with asyncio.timeout(1.0):
            while not second.switches.is_on(JIT_CLAIMS):  # noqa: ASYNC110 - polled by design
                await asyncio.sleep(POLL_S / 5)
        claimed = await bob.access.claim_grant(grant_id=approved.grant.id)
        assert claimed.token
        assert not second.component(EdgeLayer).cache.coalescing
        listed = {state.name: state for state in (await admin.access.list_switches()).switches}
        assert (listed[JIT_CLAIMS].value, listed[EDGE_COALESCING].value) == ("on", "off")
        first_page = await admin.access.list_switch_changes(page=PageRequest(page_size=2))
        assert [change.new_value for change in first_page.changes] == ["off", "on"]
        rest = await admin.access.list_switch_changes(
            page=PageRequest(page_size=2, page_token=first_page.page.next_page_token)
        )
        assert [(change.name, change.new_value) for change in rest.changes] == [(JIT_CLAIMS, "off")]
        with pytest.raises(InvalidArgumentError) as unknown:
            await admin.access.set_switch(name="jit.claims", value="off", reason="typo")
        assert unknown.value.metadata["field"] == "name"
        with pytest.raises(InvalidArgumentError) as unfit:
            await admin.access.set_switch(name=JIT_CLAIMS, value="maybe", reason="typo")
        assert unfit.value.metadata["field"] == "value"
        with pytest.raises(PermissionDeniedError):
            await alice.access.set_switch(name=JIT_CLAIMS, value="off", reason="not mine")


async def conductor(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("conductor")),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_conductor_switch_sets_lists_and_shows_history_on_the_server_s_machine(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path / "var", services="access") as platform:
        where = ["--target", platform.grpc_target, "--var-dir", str(tmp_path / "var")]
        code, out, err = await conductor(
            "switch", "set", ANALYTICS_REMOVED_PACKS, "*", "--reason", "packs too slow", *where
        )
        assert code == 0, err
        assert "every replica" in out
        await platform.switches.refresh()
        assert platform.switches.removed_packs() is None
        code, out, _ = await conductor("switch", "list", *where)
        assert code == 0
        assert ANALYTICS_REMOVED_PACKS in out
        assert "packs too slow" in out
        code, out, _ = await conductor("switch", "history", *where)
        assert code == 0
        assert f"{ANALYTICS_REMOVED_PACKS}: '' -> '*' by 'cli:" in out
        code, _, err = await conductor("switch", "set", "nope", "on", "--reason", "x", *where)
        assert code == 2
        (line,) = err.strip().splitlines()
        assert line.startswith("conductor switch set: INVALID_ARGUMENT: no switch is named 'nope'")


async def test_packs_and_what_if_sharing_back_out_on_the_other_replica(tmp_path: Path) -> None:
    services = "access,analytics,catalog"
    async with (
        serving(tmp_path / "var", services=services) as first,
        serving(tmp_path / "var", services=services) as second,
        contextlib.AsyncExitStack() as closing,
    ):
        minter = Minter(first.settings)
        reader_token = minter(["analytics.read", "catalog.read"], tenant=TENANT, subject="ann")
        reader = await closing.enter_async_context(
            AsyncClient(second.grpc_target, INSECURE, token=lambda: reader_token)
        )
        before = {spec.id for spec in (await reader.analytics.list_packs()).packs}
        removed = sorted(before)[0]
        with pytest.raises(UnfitValue, match="names no pack: pagerank"):
            await first.switches.set(
                ANALYTICS_REMOVED_PACKS, "pagerank", changed_by="o", reason="x"
            )
        await first.switches.set(ANALYTICS_REMOVED_PACKS, removed, changed_by="ops", reason="slow")
        await first.switches.set(WHATIF_SHARING, "off", changed_by="ops", reason="leak review")
        async with asyncio.timeout(1.0):
            while second.switches.is_on(WHATIF_SHARING):  # noqa: ASYNC110 - polled by design
                await asyncio.sleep(POLL_S / 5)
        after = {spec.id for spec in (await reader.analytics.list_packs()).packs}
        assert after == before - {removed}
        with pytest.raises(FailedPreconditionError) as refused:
            await reader.analytics.run_pack(pack_id=removed)
        assert refused.value.metadata == {"switch": ANALYTICS_REMOVED_PACKS, "pack_id": removed}
        with pytest.raises(FailedPreconditionError) as hidden:
            await reader.catalog.list_scenarios()
        assert hidden.value.metadata["switch"] == WHATIF_SHARING
        await first.switches.set(ANALYTICS_REMOVED_PACKS, "*", changed_by="ops", reason="all")
        async with asyncio.timeout(1.0):
            while second.switches.removed_packs() is not None:  # noqa: ASYNC110 - polled
                await asyncio.sleep(POLL_S / 5)
        assert not (await reader.analytics.list_packs()).packs


async def test_a_purpose_held_at_an_earlier_template_version_on_the_other_replica(
    tmp_path: Path,
) -> None:
    async with (
        serving(tmp_path / "var", services="access,rag") as first,
        serving(tmp_path / "var", services="access,rag") as second,
        contextlib.AsyncExitStack() as closing,
    ):
        token = Minter(first.settings)(["rag.read", "rag.write"], tenant=TENANT, subject="ann")
        sdk = await closing.enter_async_context(
            AsyncClient(second.grpc_target, INSECURE, token=lambda: token)
        )
        text = b"# Notes\n\nThe meeting went well. We agreed on three points. All is fine.\n"
        uploaded = await upload_document_async(sdk.rag, text, filename="notes.md")
        before = await sdk.rag.summarize(document_id=uploaded.document.id, purpose="support")
        assert before.summary.purpose.version == 2
        await first.switches.set(
            RAG_SUMMARY_TEMPLATES, "support:1", changed_by="ops", reason="v2 misbehaves"
        )
        async with asyncio.timeout(1.0):
            while not second.switches.pinned_templates():  # noqa: ASYNC110 - polled by design
                await asyncio.sleep(POLL_S / 5)
        held = await sdk.rag.summarize(document_id=uploaded.document.id, purpose="support")
        assert held.summary.purpose.version == 1
        asked = await sdk.rag.summarize(
            document_id=uploaded.document.id, purpose="support", purpose_version=2
        )
        assert asked.summary.purpose.version == 2  # asking for a version by name still gets it
        for unfit in ("support", "support:99", "gossip:1", "support:1,support:2"):
            with pytest.raises(UnfitValue):
                await first.switches.set(
                    RAG_SUMMARY_TEMPLATES, unfit, changed_by="ops", reason="unfit"
                )
