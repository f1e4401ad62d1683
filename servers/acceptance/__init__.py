"""Acceptance packs: each lane's acceptance criteria as checks a client runs against a deployment.

`conductor acceptance` runs them and prints each criterion with its measured
figure beside its threshold; `conductor evidence build` runs them and bundles
what they found. Public surface: `run_lanes`, `remote`, `ephemeral`, `LANES`,
`Check`.
"""

from servers.acceptance.checks import Check, Context
from servers.acceptance.run import (
    LANES,
    RESULTS_FILE,
    Target,
    ephemeral,
    remote,
    run_lanes,
    unreachable,
)

__all__ = [
    "LANES",
    "RESULTS_FILE",
    "Check",
    "Context",
    "Target",
    "ephemeral",
    "remote",
    "run_lanes",
    "unreachable",
]
