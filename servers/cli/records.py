"""`conductor audit`, `demo`, `billing` and `rag`: the records the platform keeps, and proofs.

(And `conductor billing tax-sandbox`, the sandbox tax API a platform may tax through.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from servers.cli.settings_options import STORE, settings_from, settings_options
from servers.cli.store import Failed, with_database
from servers.config import Settings, is_loopback

if TYPE_CHECKING:
    from servers.db import Database

#: A file the command reads: it must exist (else a usage error naming the argument).
READABLE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def audit() -> None:
    """The access audit log (requests, reviews, grants, revocations; hash-chained)."""


@audit.command(name="export")
@click.option("--tenant", required=True, type=click.UUID, help="The tenant's UUID.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="File to write [default: standard output].",
)
@settings_options(*STORE)
def export_audit(tenant: uuid.UUID, out: Path | None, **flags: Any) -> int:
    """Write TENANT's audit events as JSON Lines, oldest first."""
    settings = settings_from(flags)
    return with_database(settings, _export_audit(settings, tenant, out))


async def _export_audit(settings: Settings, tenant: uuid.UUID, out: Path | None) -> int:
    from servers.access import export_audit as export  # noqa: PLC0415
    from servers.db import Database  # noqa: PLC0415

    database = Database(settings.database_url)
    try:
        with out.open("w") if out else contextlib.nullcontext(sys.stdout) as sink:
            written = await export(database, tenant, sink)
    finally:
        await database.dispose()
    click.echo(f"exported {written} audit events", err=True)
    return 0


@click.group()
def demo() -> None:
    """Sample data to try the platform with."""


#: The tenant `demo seed` fills unless told otherwise (and `acceptance` looks in).
DEMO_TENANT = uuid.UUID("00000000-0000-4000-8000-00000000de30")


@demo.command()
@click.option(
    "--tenant",
    type=click.UUID,
    default=str(DEMO_TENANT),
    show_default=True,
    help="The tenant's UUID (`conductor acceptance` uses this one's graph by default).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 10_000_000),
    default=250_000,
    show_default=True,
    help="Entities.",
)
@click.option(
    "--edges",
    type=click.IntRange(0, 50_000_000),
    default=1_200_000,
    show_default=True,
    help="Relationships.",
)
@click.option(
    "--seed", type=int, default=7, show_default=True, help="The same seed, the same graph."
)
@settings_options(*STORE, "auto_migrate")
def seed(tenant: uuid.UUID, nodes: int, edges: int, seed: int, **flags: Any) -> int:
    """Import a heavy-tailed sample graph into TENANT (deterministic; the same ids every time)."""
    settings = settings_from(flags)
    return with_database(settings, _seed(settings, tenant, nodes, edges, seed))


async def _seed(settings: Settings, tenant: uuid.UUID, nodes: int, edges: int, seed: int) -> int:
    from servers.analytics import seed_tenant  # noqa: PLC0415
    from servers.db import Database  # noqa: PLC0415
    from servers.db.migrate import ensure_schema  # noqa: PLC0415

    console = Console(stderr=True)
    database = Database(settings.database_url)
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("entities and relationships"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("import", total=nodes + edges)
        try:
            await ensure_schema(database.engine, migrate=settings.migrates_at_start)
            revision = await seed_tenant(
                database,
                tenant,
                nodes,
                edges,
                seed,
                progress=lambda items: progress.advance(task, items),
            )
        finally:
            await database.dispose()
    click.echo(f"seeded tenant {tenant}: graph revision {revision}", err=True)
    return 0


@click.group()
def billing() -> None:
    """Signed billing documents (invoices, credit notes), and the sandbox tax API."""


@billing.command(name="verify")
@click.argument("document", type=READABLE)
@click.option(
    "--jwks", type=READABLE, help="Public keys to verify with [default: the local billing keys]."
)
@settings_options("var_dir", "billing_keys_dir")
def verify_document(document: Path, jwks: Path | None, **flags: Any) -> int:
    """Check a signed invoice or credit note (JSON, as GetInvoice returns it) offline."""
    import servers.billing as documents  # noqa: PLC0415 - verifying signed documents

    settings = settings_from(flags)
    try:
        keys = (
            json.loads(jwks.read_text())["keys"]
            if jwks
            else documents.DocumentSigner(settings.document_keys_dir).jwks()
        )
        verified = documents.verify(
            *documents.signed_parts(json.loads(document.read_text())),
            documents.public_keys(keys),
        )
    except (OSError, ValueError, KeyError, documents.VerificationError) as error:
        raise Failed(f"NOT VALID: {error}") from None
    click.echo(f"valid {verified['type']} {verified['number']}: signature verified")
    click.echo(json.dumps(verified, indent=2, ensure_ascii=False))
    return 0


@billing.command(name="jwks")
@settings_options(*STORE, "billing_keys_dir")
def billing_jwks(**flags: Any) -> int:
    """Print every public key that ever signed a billing document (a JWKS)."""
    from servers.billing import published_keys  # noqa: PLC0415

    settings = settings_from(flags)
    directory = settings.document_keys_dir
    return with_database(
        settings, _print_keys(settings, lambda database: published_keys(database, directory))
    )


@billing.command(name="tax-sandbox")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told)."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8089,
    show_default=True,
    help="Port; 0 picks a free one.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve plain HTTP on an address other than loopback (refused otherwise).",
)
def tax_sandbox(host: str, port: int, *, insecure: bool) -> int:
    """Serve the sandbox tax API until SIGTERM or Ctrl-C (CONDUCTOR_TAX_URL may point to it).

    POST /v1/tax/calculate taxes from the built-in rate table exactly as the platform
    does in process; GET /healthz answers 200. Says "tax sandbox serving http://HOST:PORT"
    on standard error once it listens.
    """
    if not insecure and not is_loopback(host):
        raise click.BadParameter(
            f"{host} is not loopback: the sandbox speaks plain HTTP (add --insecure to serve "
            "it there anyway)",
            param_hint="'--host'",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restarted on its port at once
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise Failed(f"cannot bind {host} port {port}: {error.strerror}") from None
    with sock:
        return asyncio.run(_serve_tax_sandbox(sock))


async def _serve_tax_sandbox(sock: socket.socket) -> int:
    from servers.billing import serving_sandbox_tax_api  # noqa: PLC0415

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with serving_sandbox_tax_api(sock) as url:
        click.echo(f"tax sandbox serving {url}", err=True)
        await stopping.wait()
    return 0


async def _print_keys(
    settings: Settings, published: Callable[[Database], Awaitable[list[dict[str, str]]]]
) -> int:
    """Print the JWKS of the keys `published` reads from the store."""
    from servers.db import Database  # noqa: PLC0415

    database = Database(settings.database_url)
    try:
        keys = await published(database)
    finally:
        await database.dispose()
    click.echo(json.dumps({"keys": keys}, indent=2))
    return 0


@click.group()
def rag() -> None:
    """Rag proof manifests (what a summary or export was made from)."""


@rag.command(name="verify")
@click.argument("manifest", type=READABLE)
@click.option(
    "--document",
    type=READABLE,
    help="The uploaded document: its digest (and its chunks) are checked.",
)
@click.option(
    "--text",
    type=READABLE,
    help="The document's text, where it is not the upload (HTML, PDF): every chunk is checked.",
)
@click.option(
    "--jwks", type=READABLE, help="Public keys to verify with [default: the local Rag keys]."
)
@settings_options("var_dir", "rag_keys_dir")
def verify_manifest(
    manifest: Path, document: Path | None, text: Path | None, jwks: Path | None, **flags: Any
) -> int:
    """Check a proof manifest (the MANIFEST_JSON export, or GetManifest's JSON) offline."""
    from servers import rag as proofs  # noqa: PLC0415 - verifying manifests

    settings = settings_from(flags)
    try:
        keys = (
            json.loads(jwks.read_text())["keys"]
            if jwks
            else proofs.ManifestSigner(settings.manifest_keys_dir).jwks()
        )
        verified = proofs.verify_envelope(
            proofs.envelope_of(json.loads(manifest.read_text())),
            proofs.ed25519_keys(keys),
            document=document.read_bytes() if document else None,
            text=text.read_bytes() if text else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        # Files that are not what they should be (not JSON, JSON of another shape): said in a
        # line, never with the file's bytes.
        problem = str(error) if not isinstance(error, UnicodeDecodeError) else "not UTF-8 text"
        raise click.UsageError(
            f"cannot read the input: {type(error).__name__}: {problem[:200]}"
        ) from None
    except proofs.ManifestInvalid as invalid:
        raise Failed(f"NOT VALID ({invalid.check}): {invalid.problem}") from None
    content = verified.manifest
    checked = ["signature", "canonical form", "Merkle root"]
    if verified.document_checked:
        checked.append("document digest")
    if verified.text_checked:
        checked.append(f"{len(content['chunks'])} chunk digests")
    click.echo(
        f"valid manifest of document {content['document']['id']} for "
        f"{content['purpose']['id']} v{content['purpose']['version']}, signed by "
        f"{verified.keyid}: {', '.join(checked)} verified"
    )
    return 0


@rag.command(name="jwks")
@settings_options(*STORE, "rag_keys_dir")
def rag_jwks(**flags: Any) -> int:
    """Print every public key that ever signed a Rag manifest (a JWKS)."""
    from servers.rag import ManifestSigner, published_keys  # noqa: PLC0415

    settings = settings_from(flags)
    signer = ManifestSigner(settings.manifest_keys_dir)
    return with_database(
        settings, _print_keys(settings, lambda database: published_keys(database, signer))
    )


BACKUP_SETTINGS = (*STORE, "keys_dir", "billing_keys_dir", "rag_keys_dir")


@click.command(name="backup")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The archive to write (tar.gz, readable by its owner only).",
)
@settings_options(*BACKUP_SETTINGS)
def backup_store(out: Path, **flags: Any) -> int:
    """Back up the embedded store and its keys while the platform serves (SQLite only)."""
    from servers.backup import BackupError, backup  # noqa: PLC0415

    settings = settings_from(flags)
    console = Console(stderr=True)
    try:
        with console.status("backing up the store and its keys", spinner="dots"):
            archived = backup(settings, out)
    except (BackupError, OSError) as error:
        raise Failed(str(error)) from None
    click.echo(
        f"backed up the database ({archived.database_bytes} bytes, schema {archived.schema}) and "
        f"{archived.files - 1} key files to {out}",
        err=True,
    )
    return 0


@click.command(name="restore")
@click.argument("archive", type=READABLE)
@click.option(
    "--force", is_flag=True, help="Replace an existing database (it and the keys are kept beside)."
)
@settings_options(*BACKUP_SETTINGS)
def restore_store(archive: Path, *, force: bool, **flags: Any) -> int:
    """Restore the embedded store and its keys from ARCHIVE (stop the server first)."""
    from servers.backup import BackupError, restore  # noqa: PLC0415

    settings = settings_from(flags)
    try:
        restored = restore(settings, archive, force=force)
    except (BackupError, OSError) as error:
        raise Failed(str(error)) from None
    click.echo(
        f"restored the database of {restored.created_at} (schema {restored.schema}) and "
        f"{restored.files - 1} key files; start the server",
        err=True,
    )
    return 0
