"""Backup and restore: a consistent copy while the platform writes, and the PostgreSQL drill."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import tarfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from intelgraph.sdk import INSECURE, AsyncClient
from sqlalchemy.engine import make_url

from servers.app import Platform
from servers.backup import DATABASE, BackupError, backup, restore
from servers.config import load_settings
from tests.support.serving import Minter, libpq_url, serving

pytestmark = pytest.mark.asyncio

TENANT = uuid.UUID("4d2c6b8a-1e3f-4a5b-9c7d-8e9f0a1b2c3d")


@contextlib.asynccontextmanager
async def client(platform: Platform, scopes: list[str]) -> AsyncIterator[AsyncClient]:
    token = Minter(platform.settings)(scopes, tenant=TENANT, subject="alice")
    async with AsyncClient(platform.grpc_target, INSECURE, token=lambda: token) as sdk:
        yield sdk


def until(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return stamp


async def request_access(sdk: AsyncClient) -> None:
    await sdk.access.request_access(scope=["catalog.read"], expires_at=until(3600))


async def state_of(platform: Platform) -> tuple[int, bool]:
    """(access requests of the tenant, whether its audit chain verifies)."""
    async with client(platform, ["admin.write", "audit.read"]) as sdk:
        requests = [request async for request in sdk.access.iter_access_requests()]
        chain = await sdk.access.verify_audit_chain()
    return len(requests), chain.valid


async def test_a_backup_taken_under_writes_restores_a_whole_committed_state(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "backup.tar.gz"
    async with serving(tmp_path / "var", services="access") as platform:
        stop = asyncio.Event()
        written = 0
        reached: dict[int, asyncio.Event] = {20: asyncio.Event()}

        async def write() -> None:
            nonlocal written
            async with client(platform, []) as sdk:
                while not stop.is_set():
                    await request_access(sdk)
                    written += 1
                    if written in reached:
                        reached[written].set()

        writer = asyncio.create_task(write())
        await asyncio.wait_for(reached[20].wait(), 60)
        before_backup = written
        taken = await asyncio.to_thread(backup, platform.settings, archive)
        at_backup = written
        reached[at_backup + 20] = asyncio.Event()
        await asyncio.wait_for(reached[at_backup + 20].wait(), 60)  # writes go on after the copy
        stop.set()
        await writer
        original_count, original_valid = await state_of(platform)
    assert original_valid
    assert archive.stat().st_mode & 0o077 == 0
    assert taken.schema
    restored_settings = load_settings(var_dir=tmp_path / "restored", auto_migrate=False)
    restore(restored_settings, archive)
    async with serving(tmp_path / "restored", services="access") as restored:
        count, valid = await state_of(restored)
    # Everything committed before the copy, nothing after: a whole state, the chain unbroken,
    # and tokens signed with the backed-up keys still verify.
    assert valid
    # (One write is in flight at a time: committed before the copy, it may not be counted yet.)
    assert before_backup <= count <= at_backup + 1
    assert count < original_count


async def test_a_changed_or_foreign_archive_and_an_existing_store_are_refused(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path / "var", services="access") as platform:
        archive = tmp_path / "backup.tar.gz"
        await asyncio.to_thread(backup, platform.settings, archive)
        settings = platform.settings
    with pytest.raises(BackupError, match="a database exists"):
        restore(settings, archive)
    restore(settings, archive, force=True)
    (kept,) = settings.var_dir.glob(f"{DATABASE}.before-restore-*")
    assert kept.stat().st_size > 0
    assert list(settings.var_dir.glob("keys.before-restore-*"))
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(tampered, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == DATABASE:
                data = data[:-1] + bytes([data[-1] ^ 1])
            target.addfile(member, io.BytesIO(data))
    fresh = load_settings(var_dir=tmp_path / "fresh")
    with pytest.raises(BackupError, match="does not match its manifest"):
        restore(fresh, tampered)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:-20])
    with pytest.raises(BackupError, match="cannot read the backup"):
        restore(fresh, cut)
    junk = tmp_path / "junk.tar.gz"
    with tarfile.open(junk, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("hello.txt"), io.BytesIO(b""))
    with pytest.raises(BackupError, match="not a conductor backup"):
        restore(fresh, junk)
    postgres = load_settings(database_url="postgresql+psycopg://u@127.0.0.1/x")
    with pytest.raises(BackupError, match="pg_dump"):
        backup(postgres, tmp_path / "pg.tar.gz")


async def run(*command: str) -> None:
    """Run a PostgreSQL tool to its end; its failure fails the test with what it said."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()


@pytest.mark.postgres
async def test_the_postgresql_procedure_round_trips_with_pg_dump_and_pg_restore(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("no pg_dump/pg_restore: apt-get install postgresql-client")
    async with serving(
        tmp_path / "var", services="access", database_url=postgres_schema_url
    ) as platform:
        async with client(platform, []) as sdk:
            for _ in range(5):
                await request_access(sdk)
        before = await state_of(platform)
    schema = make_url(postgres_schema_url).query["options"].removeprefix("-csearch_path=")  # type: ignore[union-attr]
    source = libpq_url(postgres_schema_url.split("?", maxsplit=1)[0])
    dump = tmp_path / "conductor.dump"
    # As docs/runbooks/backup-restore.md says: a custom-format dump, restored into a new database.
    await run("pg_dump", "--format=custom", f"--schema={schema}", f"--file={dump}", source)
    database = f"restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(source, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    target = make_url(postgres_schema_url).set(database=database)
    try:
        plain_target = target.set(query={}).render_as_string(hide_password=False)
        await run("pg_restore", "--no-owner", f"--dbname={libpq_url(plain_target)}", str(dump))
        async with serving(
            tmp_path / "var",
            services="access",
            database_url=target.render_as_string(hide_password=False),
        ) as restored:
            assert await state_of(restored) == before == (5, True)
    finally:
        with psycopg.connect(source, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
