"""Running the lanes' checks against a deployment, or an ephemeral one started for the run."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from intelgraph.sdk import INSECURE, AsyncClient, ConductorError, bearer_token

from servers.acceptance.checks import Check, Context, TokenMinter
from servers.config import Settings, load_settings

#: Every lane, in the order they run (and the seed lists them).
LANES = ("billing", "edge", "rag", "catalog", "access", "analytics")
#: The results file every run writes beside the raw results.
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class Target:
    """A deployment to check: where it listens, and how to mint tokens it accepts."""

    grpc_target: str
    http_url: str
    minter: TokenMinter
    #: "ephemeral" for one started for the run, else the address given.
    description: str
    #: Started for this run (see `Context.owned`).
    owned: bool = False


def settings_minter(settings: Settings) -> TokenMinter:
    """Mints tokens with the signing keys of `settings` (as `conductor token mint` does)."""
    from interceptors import keys, tokens  # noqa: PLC0415 - loaded when a run needs them

    def mint(tenant: uuid.UUID, scopes: Sequence[str], *, subject: str, ttl_s: float) -> str:
        return tokens.mint(
            keys.load(settings.signing_keys_dir),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            subject=subject,
            tenant=tenant,
            scopes=list(scopes),
            ttl_s=ttl_s,
        )

    return mint


def remote(grpc_target: str, http_url: str, settings: Settings) -> Target:
    """A running deployment whose signing keys `settings` can read."""
    return Target(grpc_target, http_url.rstrip("/"), settings_minter(settings), grpc_target)


@contextlib.asynccontextmanager
async def ephemeral(**overrides: Any) -> AsyncIterator[Target]:
    """A platform on the embedded default (SQLite in a temporary directory), on free ports."""
    from servers.app import Platform  # noqa: PLC0415 - only a run without --target needs it
    from servers.logs import configure_logging  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="conductor-acceptance-") as var_dir:
        settings = load_settings(
            grpc_port=0,
            http_port=0,
            var_dir=Path(var_dir),
            auto_migrate=True,
            # The run's table is the output: the platform says only what went wrong.
            log_level="error",
            **overrides,
        )
        configure_logging(settings.log_level, settings.log_format)
        platform = Platform(settings)
        await platform.start()
        try:
            yield Target(
                f"{settings.host}:{platform.grpc_port}",
                f"http://{settings.host}:{platform.http_port}",
                settings_minter(settings),
                "ephemeral",
                owned=True,
            )
        finally:
            await platform.stop(grace=1)


async def run_lanes(
    target: Target,
    out: Path,
    lanes: Sequence[str] = LANES,
    *,
    quick: bool = False,
    demo_tenant: uuid.UUID | None = None,
    showcase: dict[str, uuid.UUID] | None = None,
) -> list[Check]:
    """Run each lane's checks; write every check to `out/results.json`, raw results below.

    A lane that fails unexpectedly (an exception) is one failed check naming the
    error; the other lanes still run. `showcase`, if given, collects the tenants
    the lanes name for the console's pages (see `Context.showcase`).
    """
    shown = {} if showcase is None else showcase
    await asyncio.to_thread(_clear, out)
    checks: list[Check] = []
    timings: dict[str, float] = {}
    for lane in lanes:
        module = importlib.import_module(f"servers.acceptance.{lane}")
        context = Context(
            lane=lane,
            grpc_target=target.grpc_target,
            http_url=target.http_url,
            minter=target.minter,
            raw_dir=out / "raw" / lane,
            quick=quick,
            demo_tenant=demo_tenant,
            owned=target.owned,
            showcase=shown,
        )
        started = time.perf_counter()
        try:
            await module.run(context)
        except Exception as error:  # noqa: BLE001 - one lane's fault is that lane's failure
            why = f"{type(error).__name__}: {error}"[:500]
            context.check(
                "the lane's checks ran to the end",
                threshold="no error",
                measured=why,
                passed=False,
                detail=f"The lane stopped at an error it did not expect: {why}",
            )
        timings[lane] = round(time.perf_counter() - started, 3)
        checks += context.checks
    _write_results(
        out,
        {
            "target": target.description,
            "quick": quick,
            "lanes": list(lanes),
            "seconds": timings,
            "checks": [check.as_json() for check in checks],
        },
    )
    return checks


def _clear(out: Path) -> None:
    """Remove an earlier run's results from `out` (its raw results would sit beside ours)."""
    shutil.rmtree(out / "raw", ignore_errors=True)
    (out / RESULTS_FILE).unlink(missing_ok=True)


async def unreachable(target: Target, timeout_s: float = 5.0) -> list[str]:
    """What keeps the packs from running against `target`: its listeners, its keys.

    Each problem is one sentence naming the setting to fix; none when all is well.
    """
    problems = []
    token = ""
    try:
        token = target.minter(uuid.uuid4(), [], subject="acceptance", ttl_s=60)
    except Exception as error:  # noqa: BLE001 - KeyRingError or a key that cannot sign
        problems.append(
            f"cannot mint tokens the deployment accepts ({error}): run where its signing "
            "keys are, with the same --var-dir or --keys-dir"
        )
    channel = grpc.aio.insecure_channel(target.grpc_target)
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout_s)
    except (TimeoutError, grpc.RpcError):
        problems.append(f"nothing answers gRPC at {target.grpc_target} (--target)")
    else:
        if token:
            async with AsyncClient(target.grpc_target, INSECURE, token=bearer_token(token)) as c:
                try:
                    await c.access.get_caller(timeout=timeout_s)
                except ConductorError as error:
                    problems.append(
                        f"{target.grpc_target} refuses tokens signed with these keys "
                        f"({error.reason.name}): use the deployment's --var-dir or --keys-dir"
                    )
    finally:
        await channel.close()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            answer = await http.get(f"{target.http_url}/healthz")
        if answer.status_code != 200:
            problems.append(
                f"{target.http_url}/healthz answered HTTP {answer.status_code}: is --http-url "
                "the deployment's HTTP port?"
            )
    except httpx.HTTPError as error:
        problems.append(
            f"nothing answers HTTP at {target.http_url} ({type(error).__name__}): give the "
            "deployment's HTTP address with --http-url"
        )
    return problems


def _write_results(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
