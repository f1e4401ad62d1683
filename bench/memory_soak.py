"""Memory over many policy decisions: the process's RSS stays flat.

A server process loads gRPC, NumPy and igraph before the policy engine; with
regopy loaded the wrong way round every access-request decision stranded up
to 1.2 MB (see interceptors/rego.py). This benchmark imports what the server
imports, warms the engine up, then makes mixed policy decisions the way the
server does (off the event loop): authorization decisions that miss the cache,
access-request and review decisions over varied scope sets, and edge leak
verdicts. It reports the RSS growth over them.

The baseline, in the same run and in a child process, is the same mix with
regopy loaded the old way (after gRPC, before the fix can apply), over fewer
decisions: the per-decision growth of each is reported, and their ratio.

The last line is JSON: {"bench": "memory_soak", "decisions", "rss_growth_mb",
"kb_per_decision", "baseline_kb_per_decision", "ratio", ...}.

    python bench/memory_soak.py [--quick] [--decisions N] [--baseline-decisions N]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """Resident set size of this process, in MB."""
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


async def soak(decisions: int, warmup: int, seed: int) -> dict[str, float]:
    """Make `warmup` then `decisions` mixed decisions; RSS before and after the latter."""
    import servers.app  # noqa: F401, PLC0415 - everything the server loads, in its order
    from interceptors.policy import (  # noqa: PLC0415
        POLICY_DIR,
        CallerFacts,
        MethodFacts,
        PolicyEngine,
        policy_data,
    )
    from servers.access.domain import REQUEST_DECISION, REVIEW_DECISION  # noqa: PLC0415
    from servers.edge.layer import LEAK_VERDICT  # noqa: PLC0415

    rng = random.Random(seed)
    engine = PolicyEngine()
    scopes = [*sorted(policy_data(POLICY_DIR)[0]["access_policy"]["scopes"]), "made.up"]
    method = MethodFacts("intelgraph.billing.v1.BillingService", "GetInvoice", "billing.read")
    clock = 0

    async def one() -> None:
        nonlocal clock
        kind = rng.randrange(4)
        requested = rng.sample(scopes, rng.randint(1, 4))
        if kind == 0:
            clock += 1  # a new second: the decision cache misses
            caller = CallerFacts("alice", "t", tuple(requested), rng.random() < 0.5)
            await engine.decision(caller, method, {"tenant": "t"}, clock)
        elif kind == 1:
            document = {
                "subject": "alice",
                "tenant": "t",
                "scopes": ["catalog.read"],
                "requested": requested,
                "reason": rng.choice(["", "incident 42"]),
            }
            await engine.query(REQUEST_DECISION, document)
        elif kind == 2:
            document = {
                "subject": rng.choice(["alice", "bob"]),
                "scopes": ["admin.write"],
                "requester": "alice",
                "requested": requested,
            }
            await engine.query(REVIEW_DECISION, document)
        else:
            hit = {
                "cache_key": {"tenant": "t", "scope_hash": rng.choice(["a", "b"])},
                "request": {"tenant": rng.choice(["t", "u"]), "scope_hash": "a"},
            }
            await engine.query(LEAK_VERDICT, hit)

    for _ in range(warmup):
        await one()
    before = rss_mb()
    started = time.perf_counter()
    for _ in range(decisions):
        await one()
    elapsed = time.perf_counter() - started
    after = rss_mb()
    engine.close()
    return {"rss_before_mb": before, "rss_after_mb": after, "seconds": elapsed}


def child(decisions: int, warmup: int, seed: int, *, old_load_order: bool) -> dict[str, float]:
    """Run `soak` in a fresh interpreter (optionally with regopy loaded the old way)."""
    preamble = (
        # The order the server had before the fix: gRPC first, then regopy itself.
        "import grpc, regopy\n" if old_load_order else ""
    )
    code = (
        f"{preamble}import asyncio, json, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
        "from memory_soak import soak\n"
        f"print(json.dumps(asyncio.run(soak({decisions}, {warmup}, {seed}))))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions (CI)")
    parser.add_argument("--decisions", type=int, help="decisions measured (default 10000)")
    parser.add_argument("--baseline-decisions", type=int, help="decisions of the old load order")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    decisions = args.decisions or (2_000 if args.quick else 10_000)
    baseline_decisions = args.baseline_decisions or (200 if args.quick else 1_000)

    fixed = child(decisions, args.warmup, args.seed, old_load_order=False)
    old = child(baseline_decisions, args.warmup, args.seed, old_load_order=True)
    growth = fixed["rss_after_mb"] - fixed["rss_before_mb"]
    old_growth = old["rss_after_mb"] - old["rss_before_mb"]
    per_decision_kb = growth * 1000 / decisions
    old_per_decision_kb = old_growth * 1000 / baseline_decisions
    print(
        f"fixed load order:  {decisions} decisions in {fixed['seconds']:.1f} s, "
        f"RSS {fixed['rss_before_mb']:.0f} -> {fixed['rss_after_mb']:.0f} MB "
        f"({per_decision_kb:.2f} kB/decision)"
    )
    print(
        f"old load order:    {baseline_decisions} decisions in {old['seconds']:.1f} s, "
        f"RSS {old['rss_before_mb']:.0f} -> {old['rss_after_mb']:.0f} MB "
        f"({old_per_decision_kb:.2f} kB/decision)"
    )
    print(
        json.dumps(
            {
                "bench": "memory_soak",
                "decisions": decisions,
                "rss_growth_mb": round(growth, 2),
                "kb_per_decision": round(per_decision_kb, 3),
                "decisions_per_s": round(decisions / fixed["seconds"]),
                "baseline_decisions": baseline_decisions,
                "baseline_rss_growth_mb": round(old_growth, 2),
                "baseline_kb_per_decision": round(old_per_decision_kb, 3),
                "ratio": round(per_decision_kb / old_per_decision_kb, 4)
                if old_per_decision_kb > 0
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
