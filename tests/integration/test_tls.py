"""TLS and mTLS on both ports, certificates renewed without a restart, grpcurl with -cacert."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import trustme
from intelgraph.sdk import INSECURE, TLS, AsyncClient, ConductorError, UnavailableError

from interceptors.policy import POLICY_DIR
from servers.app import Platform, StartupError
from servers.config import load_settings
from tests.support.serving import Minter, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

TENANT = uuid.UUID("6a0c1d2e-3f40-4b5c-8d6e-7f8091a2b3c4")
GRPCURL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "grpcurl"


@dataclass
class Pki:
    """A CA, the server's certificate files, and client certificates it signed."""

    ca: trustme.CA
    directory: Path

    @property
    def files(self) -> dict[str, Any]:
        return {"tls_cert": self.directory / "server.pem", "tls_key": self.directory / "key.pem"}

    def issue_server(self) -> None:
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "server.pem").write_bytes(
            b"".join(blob.bytes() for blob in server.cert_chain_pems)
        )
        server.private_key_pem.write_to_path(str(self.directory / "key.pem"))
        self.ca.cert_pem.write_to_path(str(self.directory / "ca.pem"))

    def client(self, name: str) -> TLS:
        leaf = self.ca.issue_cert(f"{name}.clients.example", common_name=name)
        return TLS(
            self.ca.cert_pem.bytes(),
            b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
            leaf.private_key_pem.bytes(),
        )

    def client_files(self, name: str) -> tuple[Path, Path]:
        tls = self.client(name)
        assert tls.certificate_chain is not None
        assert tls.private_key is not None
        certificate, key = self.directory / f"{name}.pem", self.directory / f"{name}-key.pem"
        certificate.write_bytes(tls.certificate_chain)
        key.write_bytes(tls.private_key)
        return certificate, key

    @property
    def trust(self) -> TLS:
        return TLS(self.ca.cert_pem.bytes())

    def http_context(self, client: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.directory / "ca.pem"))
        if client is not None:
            certificate, key = self.client_files(client)
            context.load_cert_chain(certificate, key)
        return context


def new_pki(directory: Path) -> Pki:
    pki = Pki(trustme.CA(), directory)
    pki.issue_server()
    return pki


async def caller(platform: Platform, security: TLS, scopes: list[str] | None = None) -> str:
    token = Minter(platform.settings)(scopes or ["catalog.read"], tenant=TENANT, subject="alice")
    async with AsyncClient(platform.grpc_target, security, token=lambda: token) as client:
        answer = await client.access.get_caller(timeout=5)
    return answer.subject


async def https_get(platform: Platform, context: ssl.SSLContext, path: str) -> httpx.Response:
    async with httpx.AsyncClient(verify=context) as http:
        return await http.get(f"https://127.0.0.1:{platform.http_port}{path}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tls(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Platform, Pki]]:
    pki = new_pki(tmp_path_factory.mktemp("pki"))
    var = tmp_path_factory.mktemp("tls")
    async with serving(var, services="access,catalog", **pki.files) as running:
        yield running, pki


async def test_both_ports_speak_tls_and_plaintext_is_refused(tls: tuple[Platform, Pki]) -> None:
    platform, pki = tls
    assert await caller(platform, pki.trust) == "alice"
    async with AsyncClient(platform.grpc_target, INSECURE, retry=None) as plain:
        with pytest.raises(UnavailableError):
            await plain.access.get_jwks(timeout=3)
    assert (await https_get(platform, pki.http_context(), "/healthz")).status_code == 200
    with pytest.raises(httpx.HTTPError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{platform.http_port}/healthz")


async def test_the_facade_reaches_grpc_over_its_private_socket(tls: tuple[Platform, Pki]) -> None:
    platform, pki = tls
    assert platform.internal_target.startswith("unix:")
    socket_file = Path(platform.internal_target.removeprefix("unix:"))
    assert socket_file.parent.stat().st_mode & 0o077 == 0
    token = Minter(platform.settings)(["catalog.read"], tenant=TENANT, subject="alice")
    async with httpx.AsyncClient(verify=pki.http_context()) as http:
        answer = await http.post(
            f"https://127.0.0.1:{platform.http_port}/graphql",
            json={"query": "{ caller { subject } }"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert answer.json() == {"data": {"caller": {"subject": "alice"}}}


async def test_grpcurl_lists_and_describes_over_tls(tls: tuple[Platform, Pki]) -> None:
    platform, pki = tls
    listed = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-cacert",
        str(pki.directory / "ca.pem"),
        platform.grpc_target,
        "list",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(listed.communicate(), 30)
    assert listed.returncode == 0, err.decode()
    assert "intelgraph.access.v1.AccessService" in out.decode()


async def test_renewed_certificates_serve_new_connections_without_a_restart(
    tls: tuple[Platform, Pki],
) -> None:
    platform, pki = tls
    renewed = Pki(trustme.CA(), pki.directory / "renewed")
    renewed.issue_server()
    # Halfway through a renewal (the new certificate beside the old key) the old pair serves.
    shutil.copy(renewed.directory / "server.pem", pki.directory / "server.pem")
    await asyncio.sleep(2.5)  # the files are looked at every 2 s
    assert (await https_get(platform, pki.http_context(), "/healthz")).status_code == 200
    assert await caller(platform, pki.trust) == "alice"
    shutil.copy(renewed.directory / "key.pem", pki.directory / "key.pem")
    await asyncio.sleep(2.5)
    assert await caller(platform, renewed.trust) == "alice"
    assert (await https_get(platform, renewed.http_context(), "/healthz")).status_code == 200
    with pytest.raises(ConductorError):
        await caller(platform, pki.trust)  # the old CA no longer vouches for what is served
    for name in ("server.pem", "key.pem"):
        shutil.copy(renewed.directory / name, pki.directory / name)


async def test_mtls_needs_a_client_certificate_whose_identity_the_policy_sees(
    tmp_path: Path,
) -> None:
    pki = new_pki(tmp_path / "pki")
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    authz = policies / "authz.rego"
    # A deployment's own rule: admin calls only from the operators' certificate.
    authz.write_text(
        authz.read_text().replace(
            "denials(call) := (",
            'denials(call) := ({reason | reason := "certificate_required"; '
            "certificate_required(call)} | ",
        )
        + "\ncertificate_required(call) if {\n"
        '\tstartswith(call.method.permission, "admin.")\n'
        '\tcall.peer_certificate != "ops-admin"\n}\n'
    )
    async with serving(
        tmp_path / "var",
        services="access",
        policy_dir=policies,
        client_ca=pki.directory / "ca.pem",
        **pki.files,
    ) as platform:
        with pytest.raises(ConductorError):
            await caller(platform, pki.trust)  # no client certificate: no handshake
        assert await caller(platform, pki.client("ops-bot")) == "alice"
        admin = ["admin.write"]
        token = Minter(platform.settings)(admin, tenant=TENANT, subject="alice")
        for name, allowed in (("ops-bot", False), ("ops-admin", True)):
            async with AsyncClient(
                platform.grpc_target, pki.client(name), token=lambda: token
            ) as client:
                if allowed:
                    await client.access.list_access_requests(timeout=5)
                else:
                    with pytest.raises(ConductorError, match="certificate_required"):
                        await client.access.list_access_requests(timeout=5)
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            await https_get(platform, pki.http_context(), "/healthz")
        assert (
            await https_get(platform, pki.http_context("ops-bot"), "/healthz")
        ).status_code == 200


async def test_unreadable_certificate_files_stop_the_start_in_one_line(tmp_path: Path) -> None:
    settings = load_settings(
        var_dir=tmp_path, tls_cert=tmp_path / "missing.pem", tls_key=tmp_path / "missing-key.pem"
    )
    with pytest.raises(StartupError, match=r"cannot use the TLS files .*--tls-cert"):
        Platform(settings)
