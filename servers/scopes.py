"""The scopes a token may carry, derived from the contracts: each RPC's declared permission.

A scope is exactly a permission some RPC declares (`intelgraph.common.v1.authorization`):
holding it allows those RPCs, for the token's tenant (`platform.admin` across tenants).
Whether a scope can be requested just in time, for how long and with how many
approvals, the access policy says (`access_policy.json` beside the Rego policies).
`conductor scopes` lists them; `conductor token mint` refuses any other.
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from core.descriptors import method_path, permission
from interceptors.policy import POLICY_DIR
from servers.registry import all_services

#: The access policy's data file, in a policy directory.
ACCESS_POLICY_FILE = "access_policy.json"


@dataclass(frozen=True)
class Scope:
    """One scope and what it allows.

    Attributes:
        name: "billing.read".
        rpcs: The RPCs it allows, "/package.Service/Method", sorted.
        requestable: Whether it may be requested just in time (Access).
        max_duration_s: Longest grant of it (0 when not requestable).
        approvals: Approvals a request of it needs (0 when not requestable).
    """

    name: str
    rpcs: tuple[str, ...]
    requestable: bool = False
    max_duration_s: int = 0
    approvals: int = 0


def scope_registry(policy_dir: Path | None = None) -> dict[str, Scope]:
    """Every scope of the contracts, by name, with the access policy's rules for it."""
    allowed: defaultdict[str, list[str]] = defaultdict(list)
    for service in all_services():
        for method in service.descriptor.methods:
            needed = permission(method)
            if needed:
                allowed[needed].append(method_path(method))
    policy_file = (policy_dir or POLICY_DIR) / ACCESS_POLICY_FILE
    rules = (
        json.loads(policy_file.read_text())["access_policy"]["scopes"]
        if policy_file.exists()
        else {}
    )
    scopes = {}
    for name in sorted(allowed):
        rule = rules.get(name, {})
        requestable = bool(rule.get("requestable", False))
        scopes[name] = Scope(
            name,
            tuple(sorted(allowed[name])),
            requestable,
            int(rule.get("max_duration_s", 0)) if requestable else 0,
            int(rule.get("approvals", 1)) if requestable else 0,
        )
    return scopes


def unknown_scopes(names: list[str], known: dict[str, Scope]) -> list[tuple[str, str | None]]:
    """Each of `names` no contract declares, with the closest known scope (or None).

    >>> unknown_scopes(["catalog.raed", "billing.read"], scope_registry())
    [('catalog.raed', 'catalog.read')]
    """
    return [
        (name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.6)), None))
        for name in names
        if name not in known
    ]
