"""Helpers of the analytics tests: waiting for a revision's results, expecting a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from intelgraph.sdk import ConductorError
from intelgraph.sdk import analytics as pb
from intelgraph.sdk.services import AsyncAnalyticsClient


async def ready(analytics: AsyncAnalyticsClient, revision: int) -> pb.GetGraphStatusResponse:
    """The graph status once `revision`'s whole-graph results are ready (waits up to 60 s)."""
    for _ in range(1200):
        status = await analytics.get_graph_status()
        if status.ready_revision >= revision:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"revision {revision} never became ready: {status}")


async def refused(awaitable: Awaitable[object]) -> ConductorError:
    """The error the call fails with (the test fails if it succeeds)."""
    with pytest.raises(ConductorError) as raised:
        await awaitable
    return raised.value
