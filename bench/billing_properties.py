"""The billing state machine, longer than CI runs it: invariant violations over many sequences.

Runs tests/integration/test_billing_domain.py's BillingMachine (random create / finalize /
credit / void / pay / refund sequences with amounts drawn at and around every
limit, the money invariants checked after every step) for `--examples`
sequences of up to `--steps` steps on SQLite, and with `--postgres` on
PostgreSQL too (CONDUCTOR_TEST_POSTGRES_URL, default 127.0.0.1). CI runs 25x25
on SQLite and 8x20 on PostgreSQL.

The last line is JSON: {"bench": "billing_properties", "examples", "steps",
"violations", "seconds", "backends"} (target: violations 0; hypothesis stops at
a backend's first violation, shrinks it and prints the failing sequence).

    python bench/billing_properties.py [--quick] [--examples N] [--steps N] [--postgres]

`--quick` runs 30 sequences of up to 25 steps on SQLite (about 30 s here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 sequences of 25 steps")
    parser.add_argument("--examples", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    args = parser.parse_args()
    args.examples = args.examples or (30 if args.quick else 300)
    args.steps = args.steps or (25 if args.quick else 50)
    if args.postgres:
        os.environ.setdefault("CONDUCTOR_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    # Imported after the environment is set: the tests read the PostgreSQL URL at import.
    from tests.integration.test_billing_domain import (  # noqa: PLC0415
        BillingMachine,
        PostgresBillingMachine,
    )

    machines: list[tuple[str, type[BillingMachine]]] = [("sqlite", BillingMachine)]
    if args.postgres:
        machines.append(("postgresql", PostgresBillingMachine))
    violations, runs = 0, 0
    started = time.perf_counter()
    for name, machine in machines:

        def teardown(self: BillingMachine, base: type[BillingMachine] = machine) -> None:
            nonlocal runs
            runs += 1
            base.teardown(self)

        counted = type(f"Counted{machine.__name__}", (machine,), {"teardown": teardown})
        try:
            run_state_machine_as_test(
                counted,
                settings=settings(
                    max_examples=args.examples,
                    stateful_step_count=args.steps,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        except AssertionError:
            violations += 1
            traceback.print_exc()
        print(f"{name}: {runs} sequences so far", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "billing_properties",
                "examples": runs,
                "steps": args.steps,
                "violations": violations,
                "seconds": round(time.perf_counter() - started, 1),
                "backends": [name for name, _ in machines],
            }
        )
    )


if __name__ == "__main__":
    main()
