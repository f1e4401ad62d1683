"""How fast a revoked or expired JIT token is refused on another replica.

Two `conductor serve` replicas share one PostgreSQL and (unless --no-redis) one
Redis. For each grant (approved and claimed on replica A): RevokeGrant on A,
then GetCaller with the JIT token on B, every 2 ms, until B refuses it; and for
grants ending at staggered times: from the grant's end to B's refusal. Prints
p50/p99 of both.

The grants that expire are all set up (approved with their end, then claimed)
before the first of them ends, so that their ends come in bursts. When that is
depends on how fast this machine sets grants up, so it is not assumed: the
first end is put SETUP_MARGIN times the setup time measured on the revoked
grants ahead, and should setup still outlast it (a grant ending before it is
claimed: "the grant is over"), those grants are dropped and set up again with
twice the lead. How many rounds that took and the lead used are reported.

The last line is JSON: {"bench": "revocation_latency", "revoke_p50_ms",
"revoke_p99_ms", "expiry_p50_ms", "expiry_p99_ms", "p99_s", "grants", "redis",
"expiry_lead_s", "expiry_setup_rounds"}, with p99_s the worse of the two p99s,
in seconds (target <= 1 s).

    python bench/revocation_latency.py [--quick] [--grants N] [--no-redis]
    (PostgreSQL and Redis on 127.0.0.1 by default; CONDUCTOR_BENCH_POSTGRES_URL / _REDIS_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import INSECURE, AsyncClient, ConductorError, access, bearer_token
from sqlalchemy.engine import make_url

from interceptors.keys import load, rotate
from interceptors.tokens import mint

BIN = Path(sys.executable).parent
SERVING = re.compile(r"conductor serving grpc=(\S+) ")
TENANT = uuid.UUID("0b7c6f9e-4c1e-4a4e-9d8e-3f2a1b0c9d8e")
POLL_S = 0.002
#: The JIT token of the grant a task watches on replica B (the token source of B's client).
JIT_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("jit_token", default="")
#: How many times the measured setup time the expiring grants are given before the first
#: ends (the machine may be busier while they are set up than while it was measured).
SETUP_MARGIN = 3.0
#: The shortest lead before the first end (ends are whole seconds).
MIN_LEAD_S = 1.0


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class Replicas:
    """Two replicas on a private PostgreSQL schema."""

    def __init__(self, postgres: str, redis: str, directory: Path) -> None:
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        self.postgres = postgres
        self.libpq = make_url(postgres).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(self.libpq, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{self.schema}"')
        url = make_url(postgres).update_query_dict({"options": f"-csearch_path={self.schema}"})
        self.keys = directory / "keys"
        rotate(self.keys, "EdDSA")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")},
            "CONDUCTOR_DATABASE_URL": url.render_as_string(hide_password=False),
            "CONDUCTOR_KEYS_DIR": str(self.keys),
            "CONDUCTOR_TOKEN_LEEWAY": "0",
            "CONDUCTOR_LOG_LEVEL": "warning",
            **({"CONDUCTOR_REDIS_URL": redis} if redis else {}),
        }
        subprocess.run([str(BIN / "conductor"), "migrate"], env=self.env, check=True)
        self.processes: list[subprocess.Popen[str]] = []
        self.targets: list[str] = []
        for name in ("a", "b"):
            process = subprocess.Popen(
                [str(BIN / "conductor"), "serve", "--grpc-port", "0", "--http-port", "0",
                 "--log-level", "info"],
                env={**self.env, "CONDUCTOR_VAR_DIR": str(directory / name)},
                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            assert process.stderr is not None
            for line in process.stderr:
                match = SERVING.search(line)
                if match:
                    self.targets.append(match[1])
                    break
            self.processes.append(process)

    def token(self, subject: str, scopes: list[str]) -> str:
        return mint(
            load(self.keys),
            issuer="intelgraph-conductor",
            audience="intelgraph",
            subject=subject,
            tenant=TENANT,
            scopes=scopes,
            ttl_s=3600,
        )

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(30)
        with psycopg.connect(self.libpq, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{self.schema}" CASCADE')


async def _grant(alice: AsyncClient, bob: AsyncClient, ends: datetime | None) -> tuple[str, str]:
    """Alice requests rag.read on replica A, Bob approves (until `ends`), Alice claims."""
    requested = await alice.access.request_access(
        scope=["rag.read"], expires_at=_stamp(datetime.now(UTC) + timedelta(minutes=30))
    )
    approve = access.ApproveAccessRequest(id=requested.access_request.id)
    if ends is not None:
        approve.grant_ends_at.CopyFrom(_stamp(ends))
    approved = await bob.access.approve_access(approve)
    claimed = await alice.access.claim_grant(grant_id=approved.grant.id)
    return approved.grant.id, claimed.token


async def _grants_ending(
    alice: AsyncClient, bob: AsyncClient, count: int, lead_s: float
) -> list[tuple[datetime, str]] | None:
    """`count` claimed grants, ending 100 a second, the first at least `lead_s` from now.

    Returns:
        (end, JIT token) of each grant; None if setting them up outlasted the lead
        (a grant ended before it was approved or claimed).
    """
    # Ends are whole seconds: the first whole second past the lead.
    first_end = (datetime.now(UTC) + timedelta(seconds=lead_s + 1)).replace(microsecond=0)
    ending = []
    for index in range(count):
        end = first_end + timedelta(seconds=index // 100)
        try:
            ending.append((end, (await _grant(alice, bob, end))[1]))
        except ConductorError:
            if datetime.now(UTC) < end:
                raise  # refused for another reason than its end having come
            return None
    return ending


async def _refused_after(on_b: AsyncClient, token: str, start: float) -> float:
    JIT_TOKEN.set(token)  # this task's calls on replica B carry it
    while True:
        try:
            await on_b.access.get_caller()
        except ConductorError:
            return time.time() - start
        await asyncio.sleep(POLL_S)


async def measure(replicas: Replicas, grants: int) -> dict[str, float]:
    a, b = replicas.targets
    alice_token = bearer_token(replicas.token("alice", ["catalog.read"]))
    async with (
        AsyncClient(a, INSECURE, token=alice_token) as alice,
        AsyncClient(a, INSECURE, token=bearer_token(replicas.token("bob", ["admin.write"]))) as bob,
        # Each watching task's JIT token; no retries, so a refusal is seen at once.
        AsyncClient(b, INSECURE, token=JIT_TOKEN.get, retry=None) as on_b,
    ):
        revoked = []
        setup_s = 0.0
        for _ in range(grants):
            started = time.perf_counter()
            grant_id, token = await _grant(alice, bob, None)
            setup_s += time.perf_counter() - started
            JIT_TOKEN.set(token)
            await on_b.access.get_caller()
            await alice.access.revoke_grant(grant_id=grant_id)
            revoked.append(await _refused_after(on_b, token, time.time()))
        # Grants ending in groups of 100 a second apart, after all are set up; each is
        # watched from just before its end.
        lead_s = max(MIN_LEAD_S, SETUP_MARGIN * setup_s)
        rounds = 1
        while (ending := await _grants_ending(alice, bob, grants, lead_s)) is None:
            print(
                f"setting up {grants} grants outlasted {lead_s:.1f} s; again with twice that",
                file=sys.stderr,
            )
            lead_s *= 2
            rounds += 1

        async def watch(end: datetime, token: str) -> float:
            await asyncio.sleep(max(0.0, end.timestamp() - time.time() - 0.05))
            return await _refused_after(on_b, token, end.timestamp())

        expired = await asyncio.gather(*(watch(end, token) for end, token in ending))
    revoke_p50, revoke_p99 = _percentiles(revoked)
    expiry_p50, expiry_p99 = _percentiles(list(expired))
    return {
        "revoke_p50_ms": round(revoke_p50 * 1000, 1),
        "revoke_p99_ms": round(revoke_p99 * 1000, 1),
        "expiry_p50_ms": round(expiry_p50 * 1000, 1),
        "expiry_p99_ms": round(expiry_p99 * 1000, 1),
        "p99_s": round(max(revoke_p99, expiry_p99), 3),
        "expiry_lead_s": round(lead_s, 1),
        "expiry_setup_rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 grants (under 50 s)")
    parser.add_argument("--grants", type=int)
    parser.add_argument("--no-redis", action="store_true", help="replicas poll the table only")
    args = parser.parse_args()
    grants = args.grants or (50 if args.quick else 200)
    postgres = os.environ.get(
        "CONDUCTOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    redis = (
        ""
        if args.no_redis
        else os.environ.get("CONDUCTOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    with tempfile.TemporaryDirectory() as directory:
        replicas = Replicas(postgres, redis, Path(directory))
        try:
            result = asyncio.run(measure(replicas, grants))
        finally:
            replicas.close()
    print(
        json.dumps(
            {"bench": "revocation_latency", **result, "grants": grants, "redis": bool(redis)}
        )
    )


if __name__ == "__main__":
    main()
