"""The Rego policies: their own unit tests, full rule coverage, and the compiled engine."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from interceptors.policy import (
    POLICY_DIR,
    CallerFacts,
    MethodFacts,
    PolicyEngine,
    PolicyError,
    policy_sources,
)
from interceptors.policy_testing import PolicyTest, run_policy_tests, unexercised_rules

#: The edge policy's own rule (its entrypoint annotation makes it queryable).
SUSPICIOUS_LEAK = "intelgraph/edge/suspicious_leak"

RESULTS = run_policy_tests()


@pytest.mark.parametrize("result", RESULTS, ids=[f"{r.module}::{r.name}" for r in RESULTS])
def test_rego_unit_test(result: PolicyTest) -> None:
    assert result.passed, result.problem


def test_there_are_rego_tests_for_every_policy_module() -> None:
    modules = {name.removesuffix(".rego") for name in policy_sources(POLICY_DIR)}
    assert {result.module.removesuffix("_test.rego") for result in RESULTS} == modules


def test_every_rule_and_reason_is_exercised() -> None:
    assert unexercised_rules() == []


def test_the_runner_reports_a_failing_test(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package p\n\nimport rego.v1\n\nyes := true\n")
    (tmp_path / "p_test.rego").write_text(
        "package p_test\n\nimport rego.v1\n\nimport data.p\n\n"
        "test_holds if p.yes\n\ntest_fails if not p.yes\n"
    )
    outcome = {result.name: result.passed for result in run_policy_tests(tmp_path)}
    assert outcome == {"test_holds": True, "test_fails": False}


def test_unexercised_rules_are_reported(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text(
        "package p\n\nimport rego.v1\n\nyes := true\n\nno := false\n\nlabel(x) := reason if {\n"
        '\treason := "untested"\n\tx\n}\n'
    )
    (tmp_path / "p_test.rego").write_text(
        "package p_test\n\nimport rego.v1\n\nimport data.p\n\ntest_yes if p.yes\n"
    )
    assert unexercised_rules(tmp_path) == [
        "p.rego: rule label",
        "p.rego: rule no",
        "p.rego: deny reason 'untested'",
    ]


def _decide(
    engine: PolicyEngine,
    scopes: tuple[str, ...] = ("catalog.read",),
    permission: str = "catalog.read",
    resource: dict[str, str] | None = None,
) -> tuple[bool, tuple[str, ...]]:
    decision = engine.decide(
        CallerFacts("alice", "t-1", scopes, jit=False),
        MethodFacts("intelgraph.catalog.v1.CatalogService", "GetEntity", permission),
        resource or {},
        1_780_000_000,
    )
    return decision.allow, decision.reasons


def test_the_engine_evaluates_the_compiled_decision() -> None:
    engine = PolicyEngine()
    assert _decide(engine) == (True, ())
    assert _decide(engine, scopes=()) == (False, ("scope_missing",))
    assert _decide(engine, permission="admin.write") == (False, ("admin_scope_required",))
    assert _decide(engine, resource={"tenant": "t-2"}, scopes=()) == (
        False,
        ("scope_missing", "tenant_mismatch"),
    )
    assert _decide(engine, permission="") == (True, ())


def test_decisions_are_cached_per_input_and_second() -> None:
    engine = PolicyEngine(cache_size=8)
    caller = CallerFacts("a", "t", ("x",), jit=False)
    method = MethodFacts("s", "m", "x")
    first = engine.decide(caller, method, {}, 1)
    assert engine.decide(caller, method, {}, 1) is first
    next_second = engine.decide(caller, method, {}, 2)
    assert next_second is not first
    assert next_second == first
    other_caller = engine.decide(caller._replace(scopes=()), method, {}, 1)
    assert other_caller.reasons == ("scope_missing",)


def test_the_leak_detector_rule_is_compiled_in() -> None:
    engine = PolicyEngine()
    leak = {"cache_key": {"tenant": "a"}, "request": {"tenant": "b"}}
    same = {"cache_key": {"tenant": "a"}, "request": {"tenant": "a"}}
    assert engine.evaluate(SUSPICIOUS_LEAK, leak) is True
    assert engine.evaluate(SUSPICIOUS_LEAK, same) is False


def test_policies_that_do_not_compile_stop_the_start(tmp_path: Path) -> None:
    (tmp_path / "broken.rego").write_text("package intelgraph.authz\n\ndecision := {\n")
    with pytest.raises(PolicyError, match="do not compile"):
        PolicyEngine(tmp_path)
    with pytest.raises(PolicyError, match="no policies"):
        PolicyEngine(tmp_path / "empty")


@pytest.mark.slow
def test_policy_decisions_keep_the_process_memory_flat() -> None:
    """The soak benchmark in quick form: thousands of mixed decisions, RSS within 20 MB.

    Before interceptors.rego settled regopy's allocator, a process that had
    loaded gRPC first grew by up to 1.2 MB per access-request decision.
    """
    bench = Path(__file__).resolve().parents[2] / "bench" / "memory_soak.py"
    output = subprocess.run(
        [sys.executable, str(bench), "--quick"], check=True, capture_output=True, text=True
    )
    figures = json.loads(output.stdout.strip().splitlines()[-1])
    assert figures["decisions"] >= 2000
    assert figures["rss_growth_mb"] <= 20, figures


async def test_concurrent_misses_share_one_evaluation_off_the_loop() -> None:
    engine = PolicyEngine()
    evaluations: list[str] = []
    evaluate = engine._evaluate_decision

    def counted(key: Any) -> Any:
        evaluations.append(threading.current_thread().name)
        return evaluate(key)

    engine._evaluate_decision = counted  # type: ignore[method-assign]
    caller = CallerFacts("alice", "t", ("catalog.read",), jit=False)
    method = MethodFacts("intelgraph.catalog.v1.CatalogService", "GetEntity", "catalog.read")
    assert engine.cached_decision(caller, method, {}, 7) is None
    decisions = await asyncio.gather(*(engine.decision(caller, method, {}, 7) for _ in range(20)))
    assert {decision.allow for decision in decisions} == {True}
    assert len(evaluations) == 1
    assert evaluations[0].startswith("policy")  # the engine's thread, not the event loop's
    assert engine.cached_decision(caller, method, {}, 7) is decisions[0]
    engine.close()
