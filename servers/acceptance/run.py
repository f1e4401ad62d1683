"""Running the lanes' checks against a deployment, or an ephemeral one started for the run."""

from __future__ import annotations

import contextlib
import importlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
            context.check(
                "the lane's checks ran to the end",
                threshold="no error",
                measured=f"{type(error).__name__}: {error}"[:500],
                passed=False,
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


def _write_results(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
