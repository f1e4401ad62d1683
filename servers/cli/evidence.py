"""`conductor acceptance` and `conductor evidence`: prove each lane, and bundle the proof."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.table import Table

from servers.cli.credentials import KEY_SETTINGS
from servers.cli.records import DEMO_TENANT, READABLE
from servers.cli.settings_options import settings_from, settings_options
from servers.cli.store import Failed
from servers.config import Settings

if TYPE_CHECKING:
    from servers.acceptance import Check, Target

#: Every lane (kept in step with `servers.acceptance.LANES`, which loads only when a run does).
LANE_NAMES = ("billing", "edge", "rag", "catalog", "access", "analytics")
#: Settings the packs read: the keys they mint tokens with, and where results go by default.
PACK_SETTINGS = (*KEY_SETTINGS, "token_issuer", "token_audience")


#: host:port, the host a name, IPv4 or bracketed IPv6 address.
_ADDRESS = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")
#: Largest --jwks file read.
MAX_JWKS_BYTES = 1024 * 1024


def _address(_context: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    found = _ADDRESS.fullmatch(value)
    if found is None or not 0 < int(found[1]) < 65536:
        raise click.BadParameter(f"{value!r} is not host:port (for example 127.0.0.1:50051)")
    return value


def _http_url(_context: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path not in {"", "/"}:
        raise click.BadParameter(
            f"{value!r} is not an http(s)://host:port base URL (for example http://127.0.0.1:8080)"
        )
    return value.rstrip("/")


def _target_options(command: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--lane",
                "lanes",
                multiple=True,
                type=click.Choice(LANE_NAMES),
                help="Run only this lane (repeatable) [default: every lane].",
            ),
            click.option(
                "--target",
                callback=_address,
                help="gRPC address (host:port) of a running deployment whose signing keys "
                "--keys-dir/--var-dir can read [default: start an ephemeral one on the "
                "embedded default for the run].",
            ),
            click.option(
                "--http-url",
                callback=_http_url,
                help="The deployment's HTTP base URL (GraphQL, the console) [default: "
                "http://<target host>:8080; give it when the HTTP port is another].",
            ),
            click.option("--quick", is_flag=True, help="Smaller samples (same thresholds)."),
            click.option(
                "--demo-tenant",
                type=click.UUID,
                default=str(DEMO_TENANT),
                show_default=True,
                help="The tenant `conductor demo seed` filled (analytics runs on its graph "
                "when it has one; otherwise on a graph the lane imports).",
            ),
        ]
    ):
        command = option(command)
    return command


@contextlib.asynccontextmanager
async def _deployment(
    settings: Settings, target: str | None, http_url: str | None
) -> AsyncIterator[Target]:
    from servers.acceptance import ephemeral, remote, unreachable  # noqa: PLC0415

    if target is None:
        if http_url:
            raise click.UsageError("--http-url needs --target")
        async with ephemeral() as started:
            yield started
        return
    host = target.rpartition(":")[0]
    deployment = remote(target, http_url or f"http://{host}:8080", settings)
    problems = await unreachable(deployment)
    if problems:
        raise Failed("; ".join(problems))
    yield deployment


def _table(checks: Sequence[Check]) -> Table:
    table = Table(title="Acceptance packs", show_lines=False)
    for column in ("lane", "check", "threshold", "measured", "result"):
        table.add_column(column)
    for check in checks:
        verdict = "[green]pass[/green]" if check.passed else "[red]FAIL[/red]"
        table.add_row(check.lane, check.name, check.threshold, check.measured, verdict)
    return table


def _report(checks: Sequence[Check], out: Path) -> int:
    console = Console()
    if not console.is_terminal:  # a log or a pipe: lines as wide as the figures need
        console = Console(width=200)
    console.print(_table(checks))
    failed = [check for check in checks if not check.passed]
    for check in failed:
        console.print(f"[red]FAIL[/red] {check.lane}: {check.name}: {check.detail}", soft_wrap=True)
    console.print(
        f"{len(checks) - len(failed)} of {len(checks)} checks passed; raw results in {out}"
    )
    return 1 if failed else 0


@click.command()
@_target_options
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for results.json and the raw results [default: VAR_DIR/acceptance].",
)
@settings_options(*PACK_SETTINGS)
def acceptance(
    lanes: tuple[str, ...],
    target: str | None,
    http_url: str | None,
    *,
    quick: bool,
    demo_tenant: uuid.UUID,
    out: Path | None,
    **flags: Any,
) -> int:
    """Run each lane's acceptance criteria against a deployment; a pass/fail table.

    Exit status 0 when every check passed, 1 when one failed.
    """
    settings = settings_from(flags)
    results = out or settings.var_dir / "acceptance"

    async def run() -> list[Check]:
        from servers.acceptance import LANES, run_lanes  # noqa: PLC0415

        async with _deployment(settings, target, http_url) as deployment:
            return await run_lanes(
                deployment, results, lanes or LANES, quick=quick, demo_tenant=demo_tenant
            )

    return _report(asyncio.run(run()), results)


@click.group()
def evidence() -> None:
    """Evidence bundles: build one from a deployment, verify one offline."""


@evidence.command()
@_target_options
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The bundle's directory (must not exist).",
)
@click.option(
    "--load-results",
    type=READABLE,
    help="`make load` results (JSON) to include [default: test-artifacts/load/load.json if any].",
)
@click.option(
    "--chaos-results",
    type=READABLE,
    help="`make chaos` results to include [default: test-artifacts/chaos/chaos.json if any].",
)
@click.option("--no-screenshots", is_flag=True, help="Leave the console screenshots out.")
@click.option(
    "--from",
    "from_bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Render again from the data of an earlier bundle (no packs run).",
)
@settings_options(*PACK_SETTINGS, "evidence_keys_dir")
def build(
    lanes: tuple[str, ...],
    target: str | None,
    http_url: str | None,
    *,
    quick: bool,
    demo_tenant: uuid.UUID,
    out: Path,
    load_results: Path | None,
    chaos_results: Path | None,
    no_screenshots: bool,
    from_bundle: Path | None,
    **flags: Any,
) -> int:
    """Run the packs, gather the evidence, render plots and index.html, sign the manifest.

    Exit status 0 when the bundle is built and every check passed, 1 otherwise (the
    bundle is still built and says which failed).
    """
    from servers.evidence import (  # noqa: PLC0415
        BundleSigner,
        Inputs,
        RenderFailed,
        collect,
        render,
    )

    settings = settings_from(flags)
    _new_directory(out)
    if from_bundle is not None:
        given = [
            flag
            for flag, value in (
                ("--target", target),
                ("--http-url", http_url),
                ("--lane", lanes),
                ("--quick", quick),
                ("--load-results", load_results),
                ("--chaos-results", chaos_results),
                ("--no-screenshots", no_screenshots),
            )
            if value
        ]
        if given:
            raise click.UsageError(
                f"--from renders the data of an earlier bundle: {', '.join(given)} would "
                "change nothing (build without --from to run the packs again)"
            )
    artifacts = Path("test-artifacts")
    inputs = Inputs(
        load=load_results or _existing(artifacts / "load" / "load.json"),
        chaos=chaos_results or _existing(artifacts / "chaos" / "chaos.json"),
    )

    async def gather(data: Path) -> None:
        from servers.acceptance import LANES  # noqa: PLC0415

        async with _deployment(settings, target, http_url) as deployment:
            await collect(
                deployment,
                data,
                lanes=lanes or LANES,
                quick=quick,
                demo_tenant=demo_tenant,
                inputs=inputs,
                take_screenshots=not no_screenshots,
            )

    signer = BundleSigner(settings.bundle_keys_dir)
    release = version("intelgraph-conductor")
    try:
        if from_bundle is not None:
            _verified_here(from_bundle, signer)
            digest = render(from_bundle, out, signer, datetime.now(UTC), version=release)
        else:
            with _scratch(out) as data:
                asyncio.run(gather(data))
                digest = render(data, out, signer, datetime.now(UTC), version=release)
    except RenderFailed as error:
        raise Failed(str(error)) from None
    results = json.loads((out / "acceptance" / "results.json").read_text())
    failed = [check for check in results["checks"] if not check["passed"]]
    click.echo(
        f"built {out} ({len(results['checks']) - len(failed)} of {len(results['checks'])} "
        f"checks passed); statement sha256 {digest}; open {out / 'index.html'}"
    )
    return 1 if failed else 0


def _new_directory(out: Path) -> None:
    """Refuse an --out that exists (or is a link) or whose parent cannot be made, up front."""
    if out.exists() or out.is_symlink():
        raise click.BadParameter(f"{out} exists: give a new directory", param_hint="'--out'")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.BadParameter(
            f"cannot create {out.parent}: {error.strerror}", param_hint="'--out'"
        ) from None
    if not os.access(out.parent, os.W_OK):
        raise click.BadParameter(f"{out.parent} is not writable", param_hint="'--out'")


def _verified_here(bundle: Path, signer: Any) -> None:
    """Refuse to render again from a bundle this signer did not sign, or one changed since."""
    from servers.evidence import BundleInvalid, verify_bundle  # noqa: PLC0415

    try:
        verify_bundle(bundle, signer.jwks())
    except BundleInvalid as error:
        raise Failed(
            f"{bundle} does not verify with this signer's keys ({error.check}: "
            f"{error.problem}); only an unchanged bundle built here is rendered again"
        ) from None


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


@contextlib.contextmanager
def _scratch(out: Path) -> Any:
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    out.parent.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix=".evidence-", dir=out.parent))
    try:
        yield data
    finally:
        shutil.rmtree(data, ignore_errors=True)


@evidence.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--jwks",
    type=READABLE,
    help="The signer's public keys, from a source you trust (`conductor evidence jwks` on "
    "the signer's side) [default: the bundle's own copy: integrity only, not authorship].",
)
def verify(bundle: Path, jwks: Path | None) -> int:
    """Check BUNDLE's files against its signed manifest, offline (exit 1 if anything differs)."""
    from servers.evidence import BundleInvalid, verify_bundle  # noqa: PLC0415
    from servers.evidence.manifest import shown  # noqa: PLC0415

    keys = None
    if jwks is not None:
        if jwks.stat().st_size > MAX_JWKS_BYTES:
            raise click.BadParameter(
                f"larger than {MAX_JWKS_BYTES} bytes: not a JWKS", param_hint="'--jwks'"
            )
        try:
            keys = json.loads(jwks.read_text())
        except (ValueError, RecursionError) as error:
            problem = "nested too deeply" if isinstance(error, RecursionError) else error
            raise click.BadParameter(f"not JSON: {problem}", param_hint="'--jwks'") from None
        if not isinstance(keys, dict):
            raise click.BadParameter("not a JWKS (a JSON object)", param_hint="'--jwks'")
    try:
        verified = verify_bundle(bundle, keys)
    except BundleInvalid as error:
        for label, names in (
            ("changed", error.changed),
            ("missing", error.missing),
            ("added", error.added),
        ):
            for name in names:
                click.echo(f"{label}: {shown(name)}", err=True)
        raise Failed(f"{bundle} does not verify ({error.check}): {error.problem}") from None
    checks = verified.predicate.get("checks", {})
    click.echo(
        f"verified {bundle}: {verified.files} files as signed by key {verified.keyid}; "
        f"built {verified.predicate.get('built_at', '?')}; "
        f"checks passed {checks.get('passed', '?')} of {checks.get('total', '?')}"
    )
    if verified.self_signed_keys:
        click.echo(
            "note: checked with the bundle's own keys (integrity, not authorship); "
            "pass --jwks with the signer's keys to know who signed it",
            err=True,
        )
    return 0


@evidence.command()
@settings_options("var_dir", "evidence_keys_dir")
def jwks(**flags: Any) -> int:
    """Print the public keys bundles built here are signed with (a JWKS, for --jwks)."""
    from servers.evidence import BundleSigner  # noqa: PLC0415

    settings = settings_from(flags)
    click.echo(json.dumps(BundleSigner(settings.bundle_keys_dir).jwks(), indent=2))
    return 0
