"""A small runner for the policies' Rego unit tests, on regopy.

Every rule named `test_*` in a `*_test.rego` module must evaluate to true
with the policies loaded beside it, as with `opa test`. `unexercised_rules`
reports policy rules that no test names (each rule head, and each `deny`
reason string), so that adding a rule without a test fails the suite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from interceptors.policy import POLICY_DIR, entrypoints, policy_data, policy_sources
from interceptors.rego import Interpreter

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\s+if\b", re.MULTILINE)
_RULE_HEAD = re.compile(
    r"^(?:default\s+)?([a-z_][a-z0-9_]*)\b(?=[^\n]*(?::=|\bif\b|\bcontains\b|\())", re.MULTILINE
)
_DENY_REASON = re.compile(r'\breason\s*:=\s*"([^"]+)"')


@dataclass(frozen=True)
class PolicyTest:
    """One `test_*` rule and its outcome."""

    module: str
    name: str
    passed: bool
    problem: str = ""


def run_policy_tests(directory: Path = POLICY_DIR) -> list[PolicyTest]:
    """Evaluate every test rule in `directory`'s test modules."""
    policies = policy_sources(directory)
    results = []
    for module, source in policy_sources(directory, tests=True).items():
        package_match = _PACKAGE.search(source)
        if package_match is None:
            results.append(PolicyTest(module, "<package>", passed=False, problem="no package"))
            continue
        interpreter = Interpreter()
        for document in policy_data(directory):
            interpreter.add_data(document)
        for name, policy in policies.items():
            interpreter.add_module(name, policy)
        interpreter.add_module(module, source)
        for name in _TEST_RULE.findall(source):
            output = interpreter.query(f"data.{package_match[1]}.{name}")
            if not output.ok():
                results.append(PolicyTest(module, name, passed=False, problem="evaluation error"))
                continue
            values = output[0].expressions if len(output) else []
            passed = values == [True]
            results.append(
                PolicyTest(
                    module, name, passed, "" if passed else f"evaluated to {values or 'undefined'}"
                )
            )
    return results


def unexercised_rules(directory: Path = POLICY_DIR) -> list[str]:
    """Policy rules (and deny reasons) that no test module mentions.

    Entrypoints only bind `input` to the functions the tests call; the engine's
    Python tests query them.
    """
    tests = "\n".join(policy_sources(directory, tests=True).values())
    missing = []
    for module, source in policy_sources(directory).items():
        annotated = {entrypoint.rsplit("/", 1)[1] for entrypoint in entrypoints({module: source})}
        for rule in sorted(set(_RULE_HEAD.findall(source)) - {"package", "import"} - annotated):
            if not re.search(rf"\.{rule}\b", tests):
                missing.append(f"{module}: rule {rule}")
        for reason in _DENY_REASON.findall(source):
            if f'"{reason}"' not in tests:
                missing.append(f"{module}: deny reason {reason!r}")
    return missing
