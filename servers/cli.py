"""The `conductor` command: serve the platform, migrate its store.

Usage::

  conductor serve [--grpc-port 50051] [--http-port 8080] [--database-url URL]
                  [--services a,b] [--workers N]
  conductor migrate [--database-url URL] [--to REVISION] [--check]
  conductor keys rotate|retire|list [--keys-dir DIR]
  conductor token mint --tenant UUID --scopes a,b [--ttl 15m] [--sub NAME]
  conductor audit export --tenant UUID [--out FILE]
  conductor demo seed --tenant UUID [--nodes 250000] [--edges 1200000] [--seed 7]
  conductor billing verify FILE [--jwks FILE] | billing jwks [--database-url URL]
  conductor rag verify MANIFEST [--document FILE] [--text FILE] [--jwks FILE] | rag jwks
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from servers.config import SERVICE_NAMES, ConfigurationError, Settings, load_settings
from servers.logs import configure_logging

logger = logging.getLogger("conductor")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conductor",
        description="IntelGraph Maestro Conductor: the gRPC platform. "
        "Every flag also reads from CONDUCTOR_<NAME> (e.g. CONDUCTOR_GRPC_PORT).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the platform until SIGTERM")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 50051; 0 = any free)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8080; 0 = any free)")
    serve.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite under var/)")
    serve.add_argument(
        "--services", help=f"comma-separated subset of {','.join(SERVICE_NAMES)} (default: all)"
    )
    serve.add_argument("--workers", type=int, help="processes sharing the ports (default 1)")
    serve.add_argument(
        "--shutdown-grace", type=float, help="seconds in-flight calls get on SIGTERM (default 10)"
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    migrate = commands.add_parser("migrate", help="bring the database schema to a revision")
    migrate.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite under var/)")
    migrate.add_argument("--to", default="head", help="target revision (default head)")
    migrate.add_argument(
        "--check", action="store_true", help="only report; exit 1 if the schema is not at head"
    )
    keys = commands.add_parser("keys", help="manage the token signing keys")
    keys.add_argument(
        "action",
        choices=["rotate", "retire", "list"],
        help="rotate: new current key, current becomes previous, previous is retired; "
        "retire: stop accepting the previous key; list: show the keys",
    )
    keys.add_argument("--keys-dir", type=Path, help="key directory (default var/keys)")
    keys.add_argument("--key-algorithm", choices=["EdDSA", "ES256"], help="for the new key")

    token = commands.add_parser("token", help="mint tokens with the local keys")
    token.add_argument("action", choices=["mint"])
    token.add_argument("--tenant", required=True, help="tenant UUID")
    token.add_argument("--scopes", required=True, help="comma-separated scopes")
    token.add_argument("--ttl", default="15m", help="lifetime: 90s, 15m, 1h (default 15m)")
    token.add_argument("--sub", default="operator", help="subject (default operator)")
    token.add_argument("--keys-dir", type=Path, help="key directory (default var/keys)")

    audit = commands.add_parser("audit", help="the access audit log")
    audit.add_argument("action", choices=["export"], help="export: write JSON Lines")
    audit.add_argument("--tenant", required=True, help="tenant UUID")
    audit.add_argument("--out", type=Path, help="file to write (default: standard output)")
    audit.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite under var/)")

    demo = commands.add_parser("demo", help="sample data")
    demo.add_argument("action", choices=["seed"], help="seed: a tenant graph, deterministic")
    demo.add_argument("--tenant", required=True, help="tenant UUID")
    demo.add_argument("--nodes", type=int, default=250_000)
    demo.add_argument("--edges", type=int, default=1_200_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite under var/)")

    billing = commands.add_parser("billing", help="signed billing documents")
    billing.add_argument(
        "action",
        choices=["verify", "jwks"],
        help="verify: check a signed invoice or credit note (JSON, as GetInvoice returns it) "
        "offline; jwks: print every public key that ever signed a document",
    )
    billing.add_argument("file", nargs="?", type=Path, help="the document to verify")
    billing.add_argument(
        "--jwks", type=Path, help="public keys to verify with (default: the local billing keys)"
    )
    billing.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite under var/)")

    rag = commands.add_parser("rag", help="Rag proof manifests")
    rag.add_argument(
        "action",
        choices=["verify", "jwks"],
        help="verify: check a proof manifest (the MANIFEST_JSON export, or GetManifest's JSON) "
        "offline; jwks: print every public key that ever signed a manifest",
    )
    rag.add_argument("file", nargs="?", type=Path, help="the manifest to verify")
    rag.add_argument(
        "--document", type=Path, help="the uploaded document: its digest (and chunks) are checked"
    )
    rag.add_argument(
        "--text",
        type=Path,
        help="the document's text, where it is not the upload (HTML, PDF): every chunk is checked",
    )
    rag.add_argument(
        "--jwks", type=Path, help="public keys to verify with (default: the local Rag keys)"
    )
    rag.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite under var/)")
    return parser


_TTL = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_TTL_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """Seconds in a lifetime such as "90s", "15m", "1h" or "2d" (bare numbers are seconds).

    >>> parse_ttl("15m")
    900.0
    """
    match = _TTL.match(text.strip())
    if match is None:
        raise ValueError(f"not a lifetime: {text!r} (try 90s, 15m, 1h)")
    return float(match[1]) * _TTL_UNIT_S[match[2]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    not_settings = {
        *("command", "to", "check", "action", "tenant", "scopes", "ttl", "sub", "out"),
        *("nodes", "edges", "seed", "file", "jwks", "document", "text"),
    }
    flags = {key: value for key, value in vars(args).items() if key not in not_settings}
    try:
        settings = load_settings(**flags)
    except ConfigurationError as error:
        print(f"conductor: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    commands: dict[str, Callable[[], int]] = {
        "serve": lambda: _serve(settings),
        "migrate": lambda: _with_database(settings, _migrate(settings, args.to, check=args.check)),
        "keys": lambda: _keys(settings, args.action),
        "token": lambda: _mint(settings, args),
        "audit": lambda: _with_database(settings, _export_audit(settings, args.tenant, args.out)),
        "demo": lambda: _with_database(settings, _seed(settings, args)),
        "billing": lambda: _billing(settings, args),
        "rag": lambda: _rag(settings, args),
    }
    return commands[args.command]()


def _with_database(settings: Settings, command: Coroutine[Any, Any, int]) -> int:
    """Run a command that uses the database; a database failure is one line, exit 1."""
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 - keep the CLI's start light

    from servers.db.database import describe, displayed  # noqa: PLC0415

    try:
        return asyncio.run(command)
    except (DBAPIError, OSError) as error:
        where = displayed(settings.database_url)
        print(
            f"conductor: cannot use the database {where} "
            f"(CONDUCTOR_DATABASE_URL / --database-url): {describe(error)}",
            file=sys.stderr,
        )
        return 1


def _keys(settings: Settings, action: str) -> int:
    from interceptors import keys  # noqa: PLC0415

    directory = settings.signing_keys_dir
    try:
        if action == "rotate":
            ring = keys.rotate(directory, settings.key_algorithm)
        elif action == "retire":
            ring = keys.retire_previous(directory)
        else:
            ring = keys.load(directory)
    except keys.KeyRingError as error:
        print(f"conductor: {error}", file=sys.stderr)
        return 1
    print(f"current  {ring.current.kid} {ring.current.algorithm}")
    if ring.previous:
        print(f"previous {ring.previous.kid} {ring.previous.algorithm}")
    return 0


def _mint(settings: Settings, args: argparse.Namespace) -> int:
    from interceptors import keys, tokens  # noqa: PLC0415

    try:
        ttl = parse_ttl(args.ttl)
        tenant = uuid.UUID(args.tenant)
    except ValueError as error:
        print(f"conductor: {error}", file=sys.stderr)
        return 2
    if ttl > settings.token_max_ttl:
        print(
            f"conductor: --ttl {args.ttl} exceeds the maximum of {settings.token_max_ttl:.0f}s "
            "(CONDUCTOR_TOKEN_MAX_TTL)",
            file=sys.stderr,
        )
        return 2
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    try:
        ring = keys.load(settings.signing_keys_dir)
    except keys.KeyRingError as error:
        print(f"conductor: {error}", file=sys.stderr)
        return 1
    print(
        tokens.mint(
            ring,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            subject=args.sub,
            tenant=tenant,
            scopes=scopes,
            ttl_s=ttl,
        )
    )
    return 0


def _serve(settings: Settings) -> int:
    from servers.app import StartupError, serve  # noqa: PLC0415 - keep `migrate` light
    from servers.db.migrate import SchemaOutOfDate  # noqa: PLC0415

    if settings.workers > 1:
        from servers.workers import run_workers  # noqa: PLC0415

        return run_workers(settings)
    try:
        asyncio.run(serve(settings))
    except (StartupError, SchemaOutOfDate) as error:
        logger.error("conductor cannot start: %s", error)  # noqa: TRY400 - no traceback wanted
        return 1
    return 0


async def _export_audit(settings: Settings, tenant_text: str, out: Path | None) -> int:
    from servers.access import export_audit  # noqa: PLC0415
    from servers.db import Database  # noqa: PLC0415

    try:
        tenant = uuid.UUID(tenant_text)
    except ValueError as error:
        print(f"conductor: {error}", file=sys.stderr)
        return 2
    database = Database(settings.database_url)
    written = 0
    try:
        with out.open("w") if out else contextlib.nullcontext(sys.stdout) as sink:
            written = await export_audit(database, tenant, sink)
    finally:
        await database.dispose()
    print(f"exported {written} audit events", file=sys.stderr)
    return 0


async def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from servers.analytics import seed_tenant  # noqa: PLC0415
    from servers.db import Database  # noqa: PLC0415
    from servers.db.migrate import ensure_schema  # noqa: PLC0415

    database = Database(settings.database_url)
    try:
        await ensure_schema(database.engine, migrate=settings.migrates_at_start)
        revision = await seed_tenant(
            database, uuid.UUID(args.tenant), args.nodes, args.edges, args.seed
        )
    finally:
        await database.dispose()
    print(f"seeded tenant {args.tenant}: graph revision {revision}", file=sys.stderr)
    return 0


async def _migrate(settings: Settings, revision: str, *, check: bool) -> int:
    from servers.db import Database  # noqa: PLC0415
    from servers.db.migrate import current_revision, head_revision, upgrade  # noqa: PLC0415

    database = Database(settings.database_url)
    try:
        if check:
            current, head = await current_revision(database.engine), head_revision()
            print(f"schema at {current or 'nothing'}, head is {head}")
            return 0 if current == head else 1
        await upgrade(database.engine, revision)
        print(f"schema at {await current_revision(database.engine)}")
        return 0
    finally:
        await database.dispose()


def _billing(settings: Settings, args: argparse.Namespace) -> int:
    import servers.billing as documents  # noqa: PLC0415 - verifying signed documents

    if args.action == "jwks":
        print(json.dumps({"keys": asyncio.run(_billing_keys(settings))}, indent=2))
        return 0
    if args.file is None:
        print("conductor billing verify: name the document file", file=sys.stderr)
        return 2
    try:
        jwks = (
            json.loads(args.jwks.read_text())["keys"]
            if args.jwks
            else documents.DocumentSigner(settings.document_keys_dir).jwks()
        )
        document = documents.verify(
            *documents.signed_parts(json.loads(args.file.read_text())),
            documents.public_keys(jwks),
        )
    except (OSError, ValueError, KeyError, documents.VerificationError) as error:
        print(f"conductor billing verify: NOT VALID: {error}", file=sys.stderr)
        return 1
    print(f"valid {document['type']} {document['number']}: signature verified")
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


async def _billing_keys(settings: Settings) -> list[dict[str, str]]:
    from servers.billing import published_keys  # noqa: PLC0415
    from servers.db import Database  # noqa: PLC0415

    database = Database(settings.database_url)
    try:
        return await published_keys(database, settings.document_keys_dir)
    finally:
        await database.dispose()


def _rag(settings: Settings, args: argparse.Namespace) -> int:
    from servers import rag  # noqa: PLC0415 - verifying manifests

    if args.action == "jwks":
        print(json.dumps({"keys": asyncio.run(_rag_keys(settings))}, indent=2))
        return 0
    if args.file is None:
        print("conductor rag verify: name the manifest file", file=sys.stderr)
        return 2
    try:
        jwks = (
            json.loads(args.jwks.read_text())["keys"]
            if args.jwks
            else rag.ManifestSigner(settings.manifest_keys_dir).jwks()
        )
        verified = rag.verify_envelope(
            rag.envelope_of(json.loads(args.file.read_text())),
            rag.ed25519_keys(jwks),
            document=args.document.read_bytes() if args.document else None,
            text=args.text.read_bytes() if args.text else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        # Files that are not what they should be (not JSON, JSON of another shape).
        print(f"conductor rag verify: cannot read the input: {error!r}", file=sys.stderr)
        return 2
    except rag.ManifestInvalid as invalid:
        print(
            f"conductor rag verify: NOT VALID ({invalid.check}): {invalid.problem}", file=sys.stderr
        )
        return 1
    manifest = verified.manifest
    checked = ["signature", "canonical form", "Merkle root"]
    if verified.document_checked:
        checked.append("document digest")
    if verified.text_checked:
        checked.append(f"{len(manifest['chunks'])} chunk digests")
    print(
        f"valid manifest of document {manifest['document']['id']} for "
        f"{manifest['purpose']['id']} v{manifest['purpose']['version']}, signed by "
        f"{verified.keyid}: {', '.join(checked)} verified"
    )
    return 0


async def _rag_keys(settings: Settings) -> list[dict[str, str]]:
    from servers.db import Database  # noqa: PLC0415
    from servers.rag import ManifestSigner, published_keys  # noqa: PLC0415

    database = Database(settings.database_url)
    try:
        return await published_keys(database, ManifestSigner(settings.manifest_keys_dir))
    finally:
        await database.dispose()
