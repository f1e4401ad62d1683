"""The Edge acceptance lane against an in-process platform, and proof that its checks can fail."""

from __future__ import annotations

import doctest
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token

from servers.acceptance import edge
from servers.acceptance.checks import Context
from servers.acceptance.edge import (
    Marks,
    judge_coverage,
    judge_reduction,
    leaked_marks,
    operation_ids,
    origin_burst,
)
from servers.app import Platform
from servers.switches import EDGE_COALESCING
from tests.support.acceptance import failures, run_lane, target_of
from tests.support.serving import Minter, serving

#: The async tests share the module's platform, so they share its event loop.
ON_THE_PLATFORMS_LOOP = pytest.mark.asyncio(loop_scope="module")

CHECKS = {"mutation→key coverage", "zero cache leaks (fuzz)", "coalescing cuts origin hits"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("var")) as running:
        yield running


@ON_THE_PLATFORMS_LOOP
async def test_the_edge_lane_passes_and_writes_its_raw_results(
    platform: Platform, tmp_path: Path
) -> None:
    checks = await run_lane(platform, "edge", tmp_path)
    assert failures(checks) == []
    assert {check.name for check in checks} == CHECKS
    raw = tmp_path / "raw" / "edge"
    coverage = json.loads((raw / "coverage.json").read_text())
    assert coverage["coverage"] >= 0.95
    assert coverage["mutations"]
    leaks = json.loads((raw / "leaks.json").read_text())
    assert (leaks["seed"], leaks["leaks"], leaks["errors"]) == (edge.FUZZ_SEED, [], [])
    assert leaks["reads"] >= 200
    assert leaks["served"].get("hit", 0) > 0  # the fuzz went through the cache
    coalescing = json.loads((raw / "coalescing.json").read_text())
    assert (
        coalescing["requests"] >= coalescing["origin_hits_without"] > coalescing["origin_hits_with"]
    )
    assert {op["name"] for op in coalescing["operations"]} == {
        name for name, _ in edge.TARGET_OPERATIONS
    }
    # The test owns the platform: the baseline is measured with the switch off, then put back.
    assert coalescing["baseline"] == "measured"
    assert coalescing["served_without"].get("coalesced", 0) == 0
    assert coalescing["switch_edge_coalescing"] == "on"
    assert platform.switches.value(EDGE_COALESCING) == "on"
    written = "".join(path.read_text() for path in raw.iterdir())
    assert "Bearer" not in written
    assert "eyJ" not in written  # no token (a JWT's encoded header) in the raw results
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seconds"]["edge"] < 60


def test_coverage_below_the_threshold_or_misreported_fails() -> None:
    covered = {f"/s/M{n}": ["/s/Read"] for n in range(19)}
    assert judge_coverage(covered, mutating_rpcs=19, covered_rpcs=19, reported=1.0).passed
    short = {**covered, "/s/Orphan": []}  # 19 of 20: 95 %, still enough
    assert judge_coverage(short, mutating_rpcs=20, covered_rpcs=19, reported=0.95).passed
    shorter = {**short, "/s/Other": []}  # 19 of 21
    judged = judge_coverage(shorter, mutating_rpcs=21, covered_rpcs=19, reported=19 / 21)
    assert not judged.passed
    assert "/s/Orphan" in judged.problems[0]
    overstated = judge_coverage(short, mutating_rpcs=20, covered_rpcs=20, reported=1.0)
    assert not overstated.passed
    unlisted = judge_coverage(covered, mutating_rpcs=25, covered_rpcs=19, reported=0.76)
    assert not unlisted.passed


def test_another_tenants_mark_anywhere_in_a_response_is_a_leak() -> None:
    theirs = Marks({str(uuid.UUID(int=7)), "svc-abc-1"}, {12_345_678})
    assert leaked_marks({"data": {"priceBook": {"prices": []}}}, theirs) == []
    nested = {"data": {"entities": {"entities": [{"name": "svc-abc-1", "owner": "x"}]}}}
    assert leaked_marks(nested, theirs) == ["svc-abc-1"]
    price = {"prices": [{"meter": "api.call", "unitPrice": {"minorUnits": "12345678"}}]}
    assert leaked_marks(price, theirs) == ["amount 12345678"]
    assert leaked_marks({"caller": {"tenantId": str(uuid.UUID(int=7))}}, theirs)


def test_coalescing_that_saves_too_little_fails() -> None:
    assert judge_reduction(4, 80)
    assert not judge_reduction(9, 10)  # 10 %
    assert not judge_reduction(0, 0)  # no burst, no proof
    assert not judge_reduction(12, 10)  # more calls than misses: a broken count


@ON_THE_PLATFORMS_LOOP
async def test_without_coalescing_every_miss_calls_the_origin(
    platform: Platform, tmp_path: Path
) -> None:
    """The lane's baseline (origin calls without coalescing = the misses) on a platform we own.

    With the switch off the cache coalesces nothing, so the same bursts cost one
    origin call per miss, and the check's judgment fails them.
    """
    target = target_of(platform)
    context = Context("edge", target.grpc_target, target.http_url, target.minter, tmp_path)
    token = Minter(platform.settings)(["platform.admin"], tenant=uuid.uuid4())
    async with AsyncClient(platform.grpc_target, INSECURE, token=bearer_token(token)) as admin:
        await admin.access.set_switch(name=EDGE_COALESCING, value="off", reason="baseline test")
        try:
            burst = await origin_burst(context, operation_ids(), copies=10, rounds=1)
        finally:
            await admin.access.set_switch(name=EDGE_COALESCING, value="on", reason="test over")
    assert burst.served["coalesced"] == 0
    assert burst.origin_with == burst.origin_without == burst.served["miss"]
    assert burst.origin_without > len(edge.TARGET_OPERATIONS)
    assert not judge_reduction(burst.origin_with, burst.origin_without)


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(edge).failed == 0
