"""The Analytics acceptance lane against an in-process platform, and proof its checks can fail."""

from __future__ import annotations

import doctest
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from intelgraph.sdk import INSECURE, AsyncClient, ConductorError, bearer_token
from intelgraph.sdk import analytics as pb

from servers.acceptance import analytics
from servers.acceptance.analytics import (
    judge_latencies,
    refusal_problem,
    result_problems,
    sample_graph,
)
from servers.app import Platform
from tests.support.acceptance import failures, run_lane
from tests.support.analytics import ready
from tests.support.serving import Minter, serving

#: The async tests share the module's platform, so they share its event loop.
ON_THE_PLATFORMS_LOOP = pytest.mark.asyncio(loop_scope="module")

CHECKS = {"pack p95 latency", "sampling and hints enforced"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("var")) as running:
        yield running


@ON_THE_PLATFORMS_LOOP
async def test_the_analytics_lane_passes_on_a_graph_it_imports(
    platform: Platform, tmp_path: Path
) -> None:
    checks = await run_lane(platform, "analytics", tmp_path)
    assert failures(checks) == []
    assert {check.name for check in checks} == CHECKS
    raw = tmp_path / "raw" / "analytics"
    latencies = json.loads((raw / "latencies.json").read_text())
    async with AsyncClient(
        platform.grpc_target,
        INSECURE,
        token=bearer_token(Minter(platform.settings)(["analytics.read"], tenant=uuid.uuid4())),
    ) as client:
        packs = {spec.id for spec in (await client.analytics.list_packs()).packs}
    assert set(latencies) == packs
    assert all(isinstance(ms, float) for samples in latencies.values() for ms in samples)
    assert sum(len(samples) for samples in latencies.values()) >= 40  # ~10/s for 5 s
    summary = json.loads((raw / "latency_summary.json").read_text())
    assert summary["graph"] == "imported"
    assert set(summary["packs"]) == packs
    assert all(figures["p95_ms"] <= 450 for figures in summary["packs"].values())
    sampling = json.loads((raw / "sampling.json").read_text())
    assert sampling["checks"]
    assert all(check["passed"] for check in sampling["checks"])
    refused = [check["what"] for check in sampling["checks"] if "refused" in check["what"]]
    assert any("top_k=1001" in what for what in refused)
    assert any("GraphQL" in what for what in refused)
    assert "eyJ" not in "".join(path.read_text() for path in raw.iterdir())  # no token
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seconds"]["analytics"] < 60


@ON_THE_PLATFORMS_LOOP
async def test_the_lane_runs_on_the_demo_tenant_when_its_results_are_ready(
    platform: Platform, tmp_path: Path
) -> None:
    demo = uuid.uuid4()
    token = Minter(platform.settings)(["analytics.read", "analytics.write"], tenant=demo)
    async with AsyncClient(platform.grpc_target, INSECURE, token=bearer_token(token)) as client:
        entities, relationships = sample_graph(800, 3000, seed=3)
        imported = await client.analytics.import_graph_from(
            entities=entities, relationships=relationships
        )
        await ready(client.analytics, imported.graph_revision)
    checks = await run_lane(platform, "analytics", tmp_path, demo_tenant=demo)
    assert failures(checks) == []
    summary = json.loads((tmp_path / "raw" / "analytics" / "latency_summary.json").read_text())
    assert (summary["tenant"], summary["graph"]) == (str(demo), "demo tenant")
    assert summary["entities"] == 800


def test_a_slow_or_failing_pack_fails_the_latency_check() -> None:
    fast = [20.0] * 40
    assert judge_latencies({"a": fast, "b": fast}, {}).passed
    slow = judge_latencies({"a": fast, "b": [20.0] * 30 + [600.0] * 10}, {})
    assert (slow.passed, slow.worst_pack, slow.worst_p95_ms) == (False, "b", 600.0)
    assert not judge_latencies({"a": fast}, {"a": 1}).passed  # an error is not an answer
    assert not judge_latencies({"a": fast, "b": []}, {}).passed  # every pack must answer
    assert not judge_latencies({}, {}).passed


def _answer(**accuracy: object) -> pb.PackResult:
    result = pb.PackResult(
        pack_id="analytics.x:v1",
        graph_revision=2,
        accuracy=pb.Accuracy(**accuracy),  # type: ignore[arg-type]
        freshness=pb.Freshness(revision=2, latest_revision=2),
    )
    result.freshness.computed_at.GetCurrentTime()
    return result


def test_answers_that_misstate_their_accuracy_sampling_or_freshness_fail() -> None:
    assert result_problems(_answer(exact=True, method="brandes")) == []
    assert result_problems(_answer(epsilon=0.005, delta=0.1, method="kadabra")) == []
    assert result_problems(_answer(l1_error_bound=1e-4, method="forward_push")) == []
    assert result_problems(_answer(exact=True))  # no method
    assert result_problems(_answer(method="guess"))  # not exact, no bound
    assert result_problems(_answer(exact=True, epsilon=0.1, delta=0.1, method="m"))
    sampled = _answer(exact=True, method="power_iteration")
    sampled.sampling.sampled = True  # with no sampler in its spec, and said exact
    assert len(result_problems(sampled)) >= 3
    stale = _answer(exact=True, method="m")
    stale.freshness.latest_revision = 3  # an earlier revision's answer not flagged stale
    assert result_problems(stale)
    undated = _answer(exact=True, method="m")
    undated.freshness.ClearField("computed_at")
    assert result_problems(undated)


def test_a_refusal_must_be_invalid_argument_naming_the_field() -> None:
    field = "parameters.top_k"
    assert refusal_problem(None, field_name=field) == "accepted"
    right = ConductorError("x", code=grpc.StatusCode.INVALID_ARGUMENT, metadata={"field": field})
    assert refusal_problem(right, field_name=field) is None
    unnamed = ConductorError("x", code=grpc.StatusCode.INVALID_ARGUMENT)
    assert refusal_problem(unnamed, field_name=field)
    internal = ConductorError("x", code=grpc.StatusCode.INTERNAL, metadata={"field": field})
    assert refusal_problem(internal, field_name=field)


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(analytics).failed == 0
