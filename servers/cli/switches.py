"""`conductor switch`: the backout switches, through the platform's own RPCs (ListSwitches, ...).

On the server's machine nothing more is needed: without a token the command mints a
short-lived `platform.admin` one with the local signing keys (subject `cli:<user>`), and
talks to the local gRPC port. From elsewhere, give `--target` and a token (`--token` or
`CONDUCTOR_TOKEN`), and `--ca` for a TLS port.
"""

from __future__ import annotations

import asyncio
import getpass
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from servers.cli.settings_options import settings_from, settings_options
from servers.cli.store import Failed
from servers.config import Settings

#: The tenant a locally minted operator token names (switches are platform-wide).
OPERATOR_TENANT = uuid.UUID(int=0)


def _token(settings: Settings, given: str | None) -> str:
    if given:
        return given
    from interceptors import keys, tokens  # noqa: PLC0415

    try:
        ring = keys.load(settings.signing_keys_dir)
    except keys.KeyRingError as error:
        raise Failed(f"{error}; or give --token (CONDUCTOR_TOKEN)") from None
    return tokens.mint(
        ring,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        subject=f"cli:{getpass.getuser()}",
        tenant=OPERATOR_TENANT,
        scopes=["platform.admin"],
        ttl_s=300,
    )


def _call(flags: dict[str, Any], work: Callable[[Any], Awaitable[int]]) -> int:
    """Run `work` with an SDK client of the target, turning platform errors into one line."""
    from intelgraph.sdk import INSECURE, TLS, AsyncClient, ConductorError  # noqa: PLC0415

    target, ca, token = flags.pop("target"), flags.pop("ca"), flags.pop("token")
    certificate, key = flags.pop("cert"), flags.pop("key")
    settings = settings_from(flags)
    bearer = _token(settings, token)
    address = target or f"{settings.host}:{settings.grpc_port}"
    if (certificate is None) != (key is None):
        raise click.BadParameter("--cert and --key go together", param_hint="'--cert'")
    security: Any = TLS.from_files(ca, certificate, key) if ca or certificate else INSECURE

    async def run() -> int:
        async with AsyncClient(address, security, token=lambda: bearer) as client:
            return await work(client)

    try:
        return asyncio.run(run())
    except ConductorError as error:
        if error.code.name == "INVALID_ARGUMENT":  # a name or value on our command line
            raise click.UsageError(f"{error.code.name}: {error.details}") from None
        raise Failed(f"{error.code.name}: {error.details}") from None


def _connection(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say where the platform is and who asks."""
    for option in reversed(
        [
            click.option(
                "--target", help="host:port of the gRPC port [default: --host:--grpc-port]."
            ),
            click.option(
                "--ca",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="PEM CA of a TLS port [default: plaintext].",
            ),
            click.option(
                "--cert",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="PEM client certificate, for an mTLS port (with --key).",
            ),
            click.option(
                "--key",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="PEM key of --cert.",
            ),
            click.option(
                "--token",
                envvar="CONDUCTOR_TOKEN",
                help="A platform.admin bearer token [env: CONDUCTOR_TOKEN; default: minted with "
                "the local keys].",
            ),
        ]
    ):
        command = option(command)
    return settings_options(
        "var_dir", "keys_dir", "host", "grpc_port", "token_issuer", "token_audience"
    )(command)


@click.group()
def switch() -> None:
    """The backout switches: back a lane out on every replica within a second (platform.admin)."""


@switch.command(name="list")
@_connection
def list_switches(**flags: Any) -> int:
    """Show every switch: its value, what it backs out, its last change."""

    async def work(client: Any) -> int:
        listed = await client.access.list_switches()
        console = Console()
        rows = []
        for state in listed.switches:
            last = (
                f"{state.changed_at.ToDatetime():%Y-%m-%d %H:%M} by {state.changed_by}: "
                f"{state.reason}"
                if state.changed_by
                else "never set"
            )
            rows.append((state.name, repr(state.value), last, state.description))
        if not console.is_terminal:  # for scripts and pipes: a line each, never folded
            for name, value, last, description in rows:
                click.echo(f"{name} = {value} ({last}) - {description}")
            return 0
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Switch", no_wrap=True)
        table.add_column("Value", no_wrap=True)
        table.add_column("Last set", overflow="fold")
        table.add_column("What it does", overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return 0

    return _call(flags, work)


@switch.command(name="set")
@click.argument("name")
@click.argument("value")
@click.option("--reason", required=True, help="Why: kept with the change.")
@_connection
def set_switch(name: str, value: str, reason: str, **flags: Any) -> int:
    """Set switch NAME to VALUE ("" where the switch takes it) on every replica."""

    async def work(client: Any) -> int:
        answer = await client.access.set_switch(name=name, value=value, reason=reason)
        click.echo(f"{answer.state.name} = {answer.state.value!r} (every replica within a second)")
        return 0

    return _call(flags, work)


@switch.command(name="history")
@click.argument("name", required=False, default="")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Changes shown, newest first.",
)
@_connection
def history(name: str, limit: int, **flags: Any) -> int:
    """Show the latest changes (of switch NAME, when given), newest first."""
    from intelgraph.common.v1.pagination_pb2 import PageRequest  # noqa: PLC0415

    async def work(client: Any) -> int:
        answer = await client.access.list_switch_changes(
            name=name, page=PageRequest(page_size=limit)
        )
        for change in answer.changes:
            click.echo(  # quoted: a subject or a reason cannot forge a line of its own
                f"{change.changed_at.ToDatetime():%Y-%m-%d %H:%M:%S} {change.name}: "
                f"{change.old_value!r} -> {change.new_value!r} by {change.changed_by!r}: "
                f"{change.reason!r}"
            )
        return 0

    return _call(flags, work)
