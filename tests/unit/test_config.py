"""Configuration: environment, flags on top, validation with messages that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers.cli import main
from servers.config import SERVICE_NAMES, ConfigurationError, Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"CONDUCTOR_{name.upper()}", raising=False)


def test_defaults_serve_everything_on_the_embedded_store() -> None:
    settings = load_settings()
    assert (settings.host, settings.grpc_port, settings.http_port) == ("127.0.0.1", 50051, 8080)
    assert settings.services == SERVICE_NAMES
    assert settings.database_url == "sqlite+aiosqlite:///var/conductor.db"
    assert settings.migrates_at_start


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUCTOR_GRPC_PORT", "6000")
    monkeypatch.setenv("CONDUCTOR_SERVICES", "rag, access")
    monkeypatch.setenv("CONDUCTOR_VAR_DIR", "/srv/conductor")
    settings = load_settings(grpc_port=7000, http_port=None)
    assert settings.grpc_port == 7000
    assert settings.http_port == 8080
    assert settings.services == ("access", "rag")  # serving order, not the order given
    assert settings.database_url == "sqlite+aiosqlite:////srv/conductor/conductor.db"


def test_postgres_is_migrated_deliberately_unless_asked() -> None:
    url = "postgresql+psycopg://conductor@db/conductor"
    assert not load_settings(database_url=url).migrates_at_start
    assert load_settings(database_url=url, auto_migrate=True).migrates_at_start


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"grpc_port": 70000}, "CONDUCTOR_GRPC_PORT / --grpc-port: Input should be less than"),
        (
            {"services": "access,ledger"},
            "CONDUCTOR_SERVICES / --services: unknown service(s) ledger",
        ),
        ({"services": " , "}, "CONDUCTOR_SERVICES / --services: name at least one service"),
        ({"workers": 0}, "CONDUCTOR_WORKERS / --workers: Input should be greater than"),
        ({"database_url": "mysql://x"}, "CONDUCTOR_DATABASE_URL / --database-url: unsupported"),
        (
            {"database_url": "postgresql+psycopg://bob:pw@127.0.0.1:notaport/db"},
            "CONDUCTOR_DATABASE_URL / --database-url: not a database URL",
        ),
        (
            {"database_url": "sqlite+aiosqlite:///:memory:"},
            "CONDUCTOR_DATABASE_URL / --database-url: an in-memory SQLite database",
        ),
        ({"database_url": "sqlite+aiosqlite://"}, "an in-memory SQLite database"),
        ({"workers": 2, "grpc_port": 0}, "workers > 1 needs fixed ports"),
        ({"log_level": "loud"}, "CONDUCTOR_LOG_LEVEL / --log-level"),
        ({"tax_url": "tax.internal:8089"}, "CONDUCTOR_TAX_URL / --tax-url: use the tax API's"),
        ({"tax_url": "http://tax.internal/?key=1"}, "--tax-url: a base URL has no query"),
        ({"tax_timeout": 0}, "CONDUCTOR_TAX_TIMEOUT / --tax-timeout: Input should be greater"),
    ],
)
def test_bad_values_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(**overrides)
    assert message in str(raised.value)


def test_settings_survive_the_trip_to_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    original = load_settings(
        grpc_port=7001, services="catalog,edge", shutdown_grace=2.5, var_dir=Path("/tmp/v")
    )
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


def test_the_cli_exits_2_on_bad_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--http-port", "-1"]) == 2
    assert "CONDUCTOR_HTTP_PORT / --http-port" in capsys.readouterr().err


def test_the_metrics_port_cannot_be_a_port_already_served() -> None:
    with pytest.raises(ConfigurationError, match="CONDUCTOR_METRICS_PORT / --metrics-port: 8080"):
        load_settings(metrics_port=8080)
    with pytest.raises(ConfigurationError, match="a port of its own"):
        load_settings(metrics_port=50051)
    assert load_settings(metrics_port=9464).metrics_port == 9464


def test_plaintext_beyond_loopback_needs_insecure_by_name(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"CONDUCTOR_HOST / --host: 0\.0\.0\.0 is reachable"
    ):
        load_settings(host="0.0.0.0")
    assert load_settings(host="0.0.0.0", insecure=True).insecure
    assert load_settings(host="::1").host == "::1"
    served = load_settings(host="0.0.0.0", tls_cert=tmp_path / "c", tls_key=tmp_path / "k")
    assert served.certificate_files is not None


def test_tls_files_go_together_and_mtls_needs_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="go together"):
        load_settings(tls_cert=tmp_path / "c")
    with pytest.raises(ConfigurationError, match="needs TLS"):
        load_settings(client_ca=tmp_path / "ca")
    assert load_settings().certificate_files is None
