"""The Rego policies: their own unit tests, full rule coverage, and the compiled engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from interceptors.policy import EDGE_SUSPICIOUS_LEAK, PolicyEngine, PolicyError
from interceptors.policy_testing import PolicyTest, run_policy_tests, unexercised_rules

RESULTS = run_policy_tests()


@pytest.mark.parametrize("result", RESULTS, ids=[f"{r.module}::{r.name}" for r in RESULTS])
def test_rego_unit_test(result: PolicyTest) -> None:
    assert result.passed, result.problem


def test_there_are_rego_tests_for_every_policy_module() -> None:
    assert {result.module for result in RESULTS} == {"authz_test.rego", "edge_test.rego"}


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


def _decide(engine: PolicyEngine, **changes: object) -> tuple[bool, tuple[str, ...]]:
    call: dict[str, object] = {
        "subject": "alice",
        "tenant": "t-1",
        "scopes": ("catalog.read",),
        "jit": False,
        "service": "intelgraph.catalog.v1.CatalogService",
        "method": "GetService",
        "permission": "catalog.read",
        "resource": {},
        "now": 1_780_000_000,
    }
    call.update(changes)
    decision = engine.authorize(**call)  # type: ignore[arg-type]
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
    first = engine.authorize(
        subject="a", tenant="t", scopes=("x",), jit=False, service="s", method="m",
        permission="x", resource={}, now=1,
    )  # fmt: skip
    again = engine.authorize(
        subject="a", tenant="t", scopes=("x",), jit=False, service="s", method="m",
        permission="x", resource={}, now=1,
    )  # fmt: skip
    next_second = engine.authorize(
        subject="a", tenant="t", scopes=("x",), jit=False, service="s", method="m",
        permission="x", resource={}, now=2,
    )  # fmt: skip
    assert again is first
    assert next_second is not first
    assert next_second == first


def test_the_leak_detector_rule_is_compiled_in() -> None:
    engine = PolicyEngine()
    leak = {"cache_key": {"tenant": "a"}, "request": {"tenant": "b"}}
    same = {"cache_key": {"tenant": "a"}, "request": {"tenant": "a"}}
    assert engine.evaluate(EDGE_SUSPICIOUS_LEAK, leak) is True
    assert engine.evaluate(EDGE_SUSPICIOUS_LEAK, same) is False


def test_policies_that_do_not_compile_stop_the_start(tmp_path: Path) -> None:
    (tmp_path / "broken.rego").write_text("package intelgraph.authz\n\ndecision := {\n")
    with pytest.raises(PolicyError, match="do not compile"):
        PolicyEngine(tmp_path)
    with pytest.raises(PolicyError, match="no policies"):
        PolicyEngine(tmp_path / "empty")
