"""Running acceptance lanes against an in-process platform, as `conductor acceptance` would."""

from __future__ import annotations

from pathlib import Path

from servers.acceptance import Check, Target, run_lanes
from servers.acceptance.run import settings_minter
from servers.app import Platform


def target_of(platform: Platform) -> Target:
    """The acceptance target of a platform serving in this process."""
    host = platform.settings.host
    return Target(
        f"{host}:{platform.grpc_port}",
        f"http://{host}:{platform.http_port}",
        settings_minter(platform.settings),
        "in-process",
        owned=True,
    )


async def run_lane(platform: Platform, lane: str, out: Path, **options: object) -> list[Check]:
    """Run one lane (quick) against `platform`; its checks."""
    return await run_lanes(target_of(platform), out, [lane], quick=True, **options)  # type: ignore[arg-type]


def failures(checks: list[Check]) -> list[str]:
    """The failed checks, as lines (empty when all passed)."""
    return [
        f"{c.lane}: {c.name}: {c.measured} (needs {c.threshold}) {c.detail}"
        for c in checks
        if not c.passed
    ]
