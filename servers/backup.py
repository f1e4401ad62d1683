"""Backup and restore of the embedded store: the SQLite database and the keys beside it.

`conductor backup --out FILE` writes one archive (tar + gzip, readable by its owner only):
a consistent copy of the database taken with SQLite's online backup while the platform
keeps serving and writing, every key directory (token signing, billing documents, Rag
manifests — without them, signed documents and manifests could no longer be verified and
tokens no longer minted), and `manifest.json` naming each file with its SHA-256, the
schema revision and the time. `conductor restore FILE` checks every hash, refuses a
backup of a schema newer than this code, and puts the files back where the settings say
(the server stopped). Analytics snapshots are not kept: they are rebuilt from the store.

PostgreSQL is backed up with its own tools (pg_dump/pg_restore): docs/runbooks/backup-restore.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from servers.config import Settings
from servers.db.migrate import head_revision, known_revisions

MANIFEST = "manifest.json"
DATABASE = "conductor.db"
#: The key directories kept, by their name in the archive.
KEY_DIRECTORIES = ("keys", "billing-keys", "rag-keys")
FORMAT = 1


class BackupError(Exception):
    """The backup or restore cannot be made; the message says why, in one line."""


@dataclass(frozen=True)
class Archived:
    """What a backup holds, or what a restore put back."""

    files: int
    database_bytes: int
    schema: str
    created_at: str


def _database_file(settings: Settings) -> Path:
    if not settings.is_sqlite:
        raise BackupError(
            "the store is PostgreSQL: back it up with pg_dump and pg_restore "
            "(docs/runbooks/backup-restore.md)"
        )
    database = make_url(settings.database_url).database
    assert database is not None  # the settings refuse an SQLite URL without a file
    return Path(database)


def _key_directories(settings: Settings) -> dict[str, Path]:
    return dict(
        zip(
            KEY_DIRECTORIES,
            (settings.signing_keys_dir, settings.document_keys_dir, settings.manifest_keys_dir),
            strict=True,
        )
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _schema_of(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else ""


def backup(settings: Settings, out: Path) -> Archived:
    """Write a backup of the embedded store to `out` while it may be in use.

    Args:
        settings: Where the store and the keys are.
        out: The archive to write (replaced atomically; mode 0600).

    Raises:
        BackupError: The store is not SQLite, or is missing.
    """
    database = _database_file(settings)
    if not database.exists():
        raise BackupError(f"no database at {database}: nothing to back up")
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        staged = Path(scratch)
        copy = staged / DATABASE
        source = sqlite3.connect(database)
        target = sqlite3.connect(copy)
        try:
            # In one step: one read transaction, so the copy is one committed state of the
            # store; in WAL mode writers go on meanwhile (copying in steps would restart
            # whenever they write, and under steady writes never finish).
            source.backup(target, pages=-1)
        finally:
            target.close()
            source.close()
        size = copy.stat().st_size
        files = {DATABASE: copy}
        for name, directory in _key_directories(settings).items():
            if directory.is_dir():
                for key in sorted(directory.iterdir()):
                    if key.is_file():
                        files[f"{name}/{key.name}"] = key
        created = datetime.now(UTC).isoformat(timespec="seconds")
        manifest = {
            "format": FORMAT,
            "created_at": created,
            "schema": _schema_of(copy),
            "files": {name: _sha256(path) for name, path in files.items()},
        }
        archive = staged / "backup.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            body = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(body), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name, path in files.items():
                tar.add(path, arcname=name, recursive=False)
        archive.chmod(0o600)
        archive.replace(out)
    return Archived(len(files), size, str(manifest["schema"]), created)


def _read_archive(source: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    try:
        with tarfile.open(source, "r:gz") as tar:
            members = {member.name: member for member in tar.getmembers() if member.isfile()}
            if MANIFEST not in members:
                raise BackupError(f"{source} is not a conductor backup (no {MANIFEST})")
            manifest_file = tar.extractfile(members[MANIFEST])
            assert manifest_file is not None
            manifest = json.loads(manifest_file.read())
            listed: dict[str, str] = manifest["files"]
            contents: dict[str, bytes] = {}
            for name, expected in listed.items():
                member = members.get(name)
                extracted = tar.extractfile(member) if member is not None else None
                if extracted is None:
                    raise BackupError(f"the backup lacks {name}, which its manifest lists")
                data = extracted.read()
                if hashlib.sha256(data).hexdigest() != expected:
                    raise BackupError(f"{name} in the backup does not match its manifest")
                contents[name] = data
    except (OSError, EOFError, tarfile.TarError, ValueError, KeyError) as error:
        raise BackupError(
            f"cannot read the backup {source}: {error or 'it is cut short'}"
        ) from None
    unlisted = set(members) - set(listed) - {MANIFEST}
    if unlisted:
        raise BackupError(f"the backup holds files its manifest does not list: {sorted(unlisted)}")
    return manifest, contents


def _keep_aside(database: Path, keys: dict[str, Path]) -> None:
    """Copy what a restore replaces beside it: the whole database (its log too) and the keys."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = database.with_name(f"{database.name}.before-restore-{stamp}")
    source, target = sqlite3.connect(database), sqlite3.connect(kept)
    try:
        source.backup(target)  # through SQLite: what is still in the -wal is kept too
    finally:
        target.close()
        source.close()
    kept.chmod(0o600)
    for directory in keys.values():
        if directory.is_dir():
            shutil.copytree(
                directory, directory.with_name(f"{directory.name}.before-restore-{stamp}")
            )


def restore(settings: Settings, source: Path, *, force: bool = False) -> Archived:
    """Put a backup's database and keys back where `settings` say (the server stopped).

    Raises:
        BackupError: The archive is damaged or changed, its schema is newer than this
            code, or a store exists already and `force` is not given.
    """
    database = _database_file(settings)
    manifest, contents = _read_archive(source)
    schema = str(manifest.get("schema", ""))
    if manifest.get("format") != FORMAT or DATABASE not in contents:
        raise BackupError(f"{source} is not a conductor backup of format {FORMAT}")
    if schema and schema not in known_revisions():
        raise BackupError(
            f"the backup's schema {schema} is unknown to this code (at {head_revision()}): "
            "restore it with the version that made it"
        )
    if database.exists() and not force:
        raise BackupError(
            f"a database exists at {database}: stop the server and give --force to replace it "
            "(it and the keys are kept beside, as .before-restore-<time>)"
        )
    keys = _key_directories(settings)
    database.parent.mkdir(parents=True, exist_ok=True)
    if database.exists():
        _keep_aside(database, keys)
    for suffix in ("-wal", "-shm"):  # a stale log must not be replayed onto the restored file
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    staged = database.with_name(database.name + ".restoring")
    staged.write_bytes(contents[DATABASE])
    staged.chmod(0o600)
    staged.replace(database)
    restored = 1
    for name, data in contents.items():
        directory_name, _, file_name = name.partition("/")
        if directory_name not in keys or not file_name or "/" in file_name:
            continue
        directory = keys[directory_name]
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        target = directory / file_name
        target.write_bytes(data)
        target.chmod(0o600)
        restored += 1
    return Archived(restored, len(contents[DATABASE]), schema, str(manifest.get("created_at")))
