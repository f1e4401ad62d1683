"""`conductor keys`, `conductor token mint` and `conductor scopes`: who may call what."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from servers.cli.settings_options import settings_from, settings_options
from servers.cli.store import Failed
from servers.config import Settings

_TTL = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_TTL_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
KEY_SETTINGS = ("var_dir", "keys_dir")
#: A subject a minted token may name: printable, no control characters, at most 200.
SUBJECT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def parse_ttl(text: str) -> float:
    """Seconds in a lifetime such as "90s", "15m", "1h" or "2d" (bare numbers are seconds).

    >>> parse_ttl("15m")
    900.0
    """
    match = _TTL.match(text.strip())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"not a lifetime: {text!r} (try 90s, 15m, 1h)")
    return float(match[1]) * _TTL_UNIT_S[match[2]]


class Lifetime(click.ParamType):  # type: ignore[type-arg]
    """A lifetime flag: 90s, 15m, 1h, 2d."""

    name = "lifetime"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds, or a usage error naming the flag."""
        if isinstance(value, float):
            return value
        try:
            return parse_ttl(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.group()
def keys() -> None:
    """Manage the token signing keys (the JWKS the platform verifies with)."""


def _show_ring(settings: Settings, action: str) -> int:
    from interceptors import keys as key_ring  # noqa: PLC0415

    directory = settings.signing_keys_dir
    try:
        if action == "rotate":
            ring = key_ring.rotate(directory, settings.key_algorithm)
        elif action == "retire":
            ring = key_ring.retire_previous(directory)
        else:
            ring = key_ring.load(directory)
    except key_ring.KeyRingError as error:
        raise Failed(str(error)) from None
    except OSError as error:
        raise Failed(f"cannot use the key directory {directory}: {error.strerror}") from None
    click.echo(f"current  {ring.current.kid} {ring.current.algorithm}")
    if ring.previous:
        click.echo(f"previous {ring.previous.kid} {ring.previous.algorithm}")
    return 0


@keys.command()
@settings_options(*KEY_SETTINGS, "key_algorithm")
def rotate(**flags: Any) -> int:
    """New current key; the current one becomes previous (still verified); previous retires."""
    return _show_ring(settings_from(flags), "rotate")


@keys.command()
@settings_options(*KEY_SETTINGS)
def retire(**flags: Any) -> int:
    """Stop accepting tokens signed by the previous key."""
    return _show_ring(settings_from(flags), "retire")


@keys.command(name="list")
@settings_options(*KEY_SETTINGS)
def list_keys(**flags: Any) -> int:
    """Show the current and previous keys."""
    return _show_ring(settings_from(flags), "list")


@click.group()
def token() -> None:
    """Tokens signed with the local keys (for operators and tests)."""


@token.command()
@click.option("--tenant", required=True, type=click.UUID, help="The tenant's UUID.")
@click.option(
    "--scopes",
    required=True,
    help='Comma-separated scopes (`conductor scopes` lists them); "" for none (a caller who may '
    "only ask for access).",
)
@click.option(
    "--ttl", type=Lifetime(), default="15m", show_default=True, help="Lifetime: 90s, 15m, 1h."
)
@click.option("--sub", default="operator", show_default=True, help="The subject (who it is).")
@settings_options(*KEY_SETTINGS, "token_issuer", "token_audience", "token_max_ttl", "policy_dir")
def mint(tenant: uuid.UUID, scopes: str, ttl: float, sub: str, **flags: Any) -> int:
    """Print a bearer token for TENANT with SCOPES."""
    from interceptors import keys as key_ring  # noqa: PLC0415
    from interceptors import tokens  # noqa: PLC0415
    from servers.scopes import scope_registry, unknown_scopes  # noqa: PLC0415

    settings = settings_from(flags)
    if ttl > settings.token_max_ttl:
        raise click.BadParameter(
            f"{ttl:.0f}s exceeds the maximum of {settings.token_max_ttl:.0f}s "
            "(CONDUCTOR_TOKEN_MAX_TTL)",
            param_hint="'--ttl'",
        )
    if not SUBJECT.fullmatch(sub):
        raise click.BadParameter(
            "1 to 200 printable characters, no control characters", param_hint="'--sub'"
        )
    names = list(dict.fromkeys(scope.strip() for scope in scopes.split(",") if scope.strip()))
    unknown = unknown_scopes(names, scope_registry(settings.policy_dir))
    if unknown:
        name, guess = unknown[0]
        hint = f"; did you mean {guess}?" if guess else "; `conductor scopes` lists them"
        raise click.BadParameter(f"no contract declares {name!r}{hint}", param_hint="'--scopes'")
    try:
        ring = key_ring.load(settings.signing_keys_dir)
    except key_ring.KeyRingError as error:
        raise Failed(str(error)) from None
    click.echo(
        tokens.mint(
            ring,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            subject=sub,
            tenant=tenant,
            scopes=names,
            ttl_s=ttl,
        )
    )
    return 0


@click.command()
@click.option("--json", "as_json", is_flag=True, help="As JSON, for scripts.")
@settings_options("policy_dir")
def scopes(*, as_json: bool, **flags: Any) -> int:
    """List the scopes a token may carry, the RPCs each allows, and how each is requested."""
    from servers.scopes import scope_registry  # noqa: PLC0415

    registry = scope_registry(settings_from(flags).policy_dir)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "scope": scope.name,
                        "rpcs": list(scope.rpcs),
                        "requestable": scope.requestable,
                        "max_duration_s": scope.max_duration_s,
                        "approvals": scope.approvals,
                    }
                    for scope in registry.values()
                ],
                indent=2,
            )
        )
        return 0
    table = Table(
        title="Scopes: each allows these RPCs, in the token's tenant", box=box.SIMPLE_HEAD
    )
    table.add_column("Scope", style="bold", no_wrap=True)
    table.add_column("Just in time", no_wrap=True)
    table.add_column("Allows", overflow="fold")
    for scope in registry.values():
        jit = (
            f"{scope.max_duration_s // 60} min, {scope.approvals} "
            f"approval{'s' if scope.approvals > 1 else ''}"
            if scope.requestable
            else "no"
        )
        table.add_row(scope.name, jit, "\n".join(_short(rpc) for rpc in scope.rpcs))
    Console().print(table)
    return 0


def _short(rpc: str) -> str:
    """An RPC's short name: Billing.GetInvoice for ".../BillingService/GetInvoice"."""
    service, _, method = rpc.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1].removesuffix('Service')}.{method}"
