"""The deployment guide's configurations are checked by their own tools: nginx -t."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trustme

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def test_the_nginx_configuration_is_valid_nginx(tmp_path: Path) -> None:
    if NGINX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs nginx for nginx -t (.ci/run installs nginx-light)")
        pytest.skip("no nginx: apt-get install nginx-light")
    leaf = trustme.CA().issue_cert("conductor.example.com")
    (tmp_path / "fullchain.pem").write_bytes(
        b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    )
    leaf.private_key_pem.write_to_path(str(tmp_path / "privkey.pem"))
    shipped = (DEPLOY / "nginx" / "conductor.conf").read_text()
    assert "/etc/conductor/tls/fullchain.pem" in shipped
    (tmp_path / "conductor.conf").write_text(shipped.replace("/etc/conductor/tls/", f"{tmp_path}/"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  include {tmp_path}/conductor.conf;\n}}\n"
    )
    checked = subprocess.run(
        [
            NGINX,
            "-t",
            "-c",
            str(tmp_path / "nginx.conf"),
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_the_systemd_units_run_the_commands_the_guide_names() -> None:
    replica = (DEPLOY / "systemd" / "conductor@.service").read_text()
    assert "ExecStart=/opt/conductor/.venv/bin/conductor serve" in replica
    assert "KillSignal=SIGTERM" in replica
    migrate = (DEPLOY / "systemd" / "conductor-migrate.service").read_text()
    assert "ExecStart=/opt/conductor/.venv/bin/conductor migrate" in migrate
    guide = (DEPLOY.parent / "docs" / "deployment.md").read_text()
    for unit in ("conductor@.service", "conductor-migrate.service", "nginx/conductor.conf"):
        assert unit in guide
