"""Resumable uploads over HTTP: tus 1.0, spoken by a standard tus client and by hand."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import httpx
import pytest
import pytest_asyncio
from intelgraph.sdk import INSECURE, AsyncClient, bearer_token
from tusclient import client as tus

from servers.app import Platform
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXT = ("Resumable uploads keep every committed byte. " * 400).encode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with serving(tmp_path_factory.mktemp("tus"), services="rag") as running:
        yield running


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    return Minter(platform.settings)(["rag.read", "rag.write"], tenant=uuid.uuid4())


def files_url(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.http_port}/files"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def creation_headers(token: str, data: bytes, **extra: str) -> dict[str, str]:
    metadata = f"filename {b64('notes.txt')},sha256 {b64(hashlib.sha256(data).hexdigest())}"
    return {
        "Tus-Resumable": "1.0.0",
        "Authorization": f"Bearer {token}",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata,
        **extra,
    }


async def test_a_standard_tus_client_uploads_with_checksums(platform: Platform, token: str) -> None:
    def upload() -> str:
        uploader = tus.TusClient(
            files_url(platform), headers={"Authorization": f"Bearer {token}"}
        ).uploader(
            file_stream=io.BytesIO(TEXT),
            chunk_size=4096,
            metadata={"filename": "notes.txt", "sha256": hashlib.sha256(TEXT).hexdigest()},
            upload_checksum=True,
        )
        uploader.upload()
        return str(uploader.url)

    url = await asyncio.to_thread(upload)
    async with httpx.AsyncClient() as http:
        head = await http.head(
            url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
        )
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(TEXT))
    document_id = head.headers["Conductor-Document-Id"]
    async with AsyncClient(platform.grpc_target, INSECURE, token=bearer_token(token)) as sdk:
        document = (await sdk.rag.get_document(document_id=document_id)).document
    assert document.sha256 == hashlib.sha256(TEXT).hexdigest()
    assert document.content_type == "text/plain"


async def test_the_protocol_by_hand(platform: Platform, token: str) -> None:
    auth = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    patch = {**auth, "Content-Type": "application/offset+octet-stream"}
    async with httpx.AsyncClient() as http:
        options = await http.options(files_url(platform))
        assert options.status_code == 204
        assert options.headers["Tus-Version"] == "1.0.0"
        assert set(options.headers["Tus-Extension"].split(",")) >= {
            "creation",
            "checksum",
            "expiration",
            "termination",
        }
        assert "sha1" in options.headers["Tus-Checksum-Algorithm"].split(",")

        unversioned = await http.post(files_url(platform), headers={"Upload-Length": "1"})
        assert unversioned.status_code == 412
        anonymous = await http.post(
            files_url(platform), headers={**creation_headers(token, TEXT), "Authorization": ""}
        )
        assert anonymous.status_code == 401
        no_digest = await http.post(
            files_url(platform),
            headers={**creation_headers(token, TEXT), "Upload-Metadata": f"filename {b64('a')}"},
        )
        assert no_digest.status_code == 400
        assert "sha256" in no_digest.text

        created = await http.post(files_url(platform), headers=creation_headers(token, TEXT))
        assert created.status_code == 201
        url = urljoin(files_url(platform), created.headers["Location"])
        assert created.headers["Location"].startswith("/files/")  # never from the Host header
        assert created.headers["Upload-Expires"].endswith("GMT")

        first = await http.patch(url, headers={**patch, "Upload-Offset": "0"}, content=TEXT[:5000])
        assert first.status_code == 204
        assert first.headers["Upload-Offset"] == "5000"
        stale = await http.patch(url, headers={**patch, "Upload-Offset": "0"}, content=TEXT[:10])
        assert stale.status_code == 409
        wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
        damaged = await http.patch(
            url,
            headers={**patch, "Upload-Offset": "5000", "Upload-Checksum": f"sha1 {wrong}"},
            content=TEXT[5000:6000],
        )
        assert damaged.status_code == 460
        head = await http.head(url, headers=auth)
        assert head.headers["Upload-Offset"] == "5000"  # the damaged body was not kept

        right = base64.b64encode(hashlib.sha1(TEXT[5000:]).digest()).decode()
        done = await http.patch(
            url,
            headers={**patch, "Upload-Offset": "5000", "Upload-Checksum": f"sha1 {right}"},
            content=TEXT[5000:],
        )
        assert done.status_code == 204
        assert done.headers["Upload-Offset"] == str(len(TEXT))
        assert done.headers["Conductor-Document-Id"]

        # Numbers that are not plain decimal, and bodies longer than the upload, are refused.
        odd = await http.post(
            files_url(platform),
            headers=[
                *(
                    (name.encode(), value.encode())
                    for name, value in creation_headers(token, TEXT).items()
                    if name != "Upload-Length"
                ),
                (b"Upload-Length", b"\xb9\xb2"),  # superscript one and two, in latin-1
            ],
        )
        assert odd.status_code == 400
        huge = await http.post(
            files_url(platform),
            headers={**creation_headers(token, TEXT), "Upload-Length": "9" * 30},
        )
        assert huge.status_code == 400
        short = await http.post(files_url(platform), headers=creation_headers(token, TEXT[:10]))
        short_url = urljoin(files_url(platform), short.headers["Location"])
        everything = base64.b64encode(hashlib.sha1(TEXT).digest()).decode()
        overlong = await http.patch(
            short_url,
            headers={**patch, "Upload-Offset": "0", "Upload-Checksum": f"sha1 {everything}"},
            content=TEXT,
        )
        assert overlong.status_code == 413

        abandoned = await http.post(files_url(platform), headers=creation_headers(token, TEXT))
        abandoned_url = urljoin(files_url(platform), abandoned.headers["Location"])
        gone = await http.delete(abandoned_url, headers=auth)
        assert gone.status_code == 204
        missing = await http.head(abandoned_url, headers=auth)
        assert missing.status_code == 404


async def test_another_tenant_cannot_see_or_append(platform: Platform, token: str) -> None:
    other = Minter(platform.settings)(["rag.read", "rag.write"], tenant=uuid.uuid4())
    async with httpx.AsyncClient() as http:
        created = await http.post(files_url(platform), headers=creation_headers(token, TEXT))
        url = urljoin(files_url(platform), created.headers["Location"])
        theirs = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {other}"}
        assert (await http.head(url, headers=theirs)).status_code == 404
        appended = await http.patch(
            url,
            headers={
                **theirs,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "0",
            },
            content=TEXT[:10],
        )
        assert appended.status_code == 404


async def test_a_patch_cut_mid_body_keeps_what_arrived_quietly(
    platform: Platform, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as http:
        created = await http.post(files_url(platform), headers=creation_headers(token, TEXT))
        url = urljoin(files_url(platform), created.headers["Location"])
        path = created.headers["Location"]
        reader, writer = await asyncio.open_connection("127.0.0.1", platform.http_port)
        head = (
            f"PATCH {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ntus-resumable: 1.0.0\r\n"
            f"authorization: Bearer {token}\r\ncontent-type: application/offset+octet-stream\r\n"
            f"upload-offset: 0\r\ncontent-length: {len(TEXT)}\r\n\r\n"
        )
        writer.write(head.encode() + TEXT[:7000])
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()  # the connection drops mid-body
        await writer.wait_closed()
        offset = -1
        for _ in range(100):
            offset = int((await http.head(url, headers=auth)).headers["Upload-Offset"])
            if offset == 7000:
                break
            await asyncio.sleep(0.05)
        assert offset == 7000  # every byte that arrived was kept
        rest = await http.patch(
            url,
            headers={
                **auth,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "7000",
            },
            content=TEXT[7000:],
        )
        assert rest.status_code == 204
        assert rest.headers["Conductor-Document-Id"]
        del reader
    unhandled = [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
    assert not unhandled
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
