"""Configuration: `CONDUCTOR_*` environment variables, overridden by flags, validated at start.

Every setting has one name: the environment variable is `CONDUCTOR_` plus the
upper-cased name, the flag is `--` plus the name with dashes
(`CONDUCTOR_GRPC_PORT` / `--grpc-port`). A bad value stops the process at
start with a message that names the variable and the flag.

>>> Settings(grpc_port=0, http_port=0).database_url
'sqlite+aiosqlite:///var/conductor.db'
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from servers.tls import CertificateFiles

#: The services `--services` may name, in the order they are served.
SERVICE_NAMES = ("access", "billing", "edge", "rag", "catalog", "analytics")

_DATABASE_SCHEMES = ("sqlite+aiosqlite://", "postgresql+psycopg://")

LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    """What `conductor` needs to run; immutable once validated."""

    model_config = SettingsConfigDict(env_prefix="CONDUCTOR_", extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address both listeners bind to.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    http_port: int = Field(
        8080, ge=0, le=65535, description="HTTP port (/healthz, /metrics); 0 picks a free one."
    )
    tls_cert: Path | None = Field(
        None,
        description="PEM certificate chain: both ports speak TLS only (with --tls-key). "
        "Renewed files are picked up without a restart.",
    )
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert.")
    client_ca: Path | None = Field(
        None,
        description="PEM CA bundle: clients must present a certificate it signed (mTLS; needs "
        "--tls-cert).",
    )
    insecure: bool = Field(
        False,
        description="Serve plaintext on an address other than loopback (refused otherwise).",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve /metrics on this port of 127.0.0.1 instead of the HTTP port (0 picks "
        "a free one); unset keeps it on the HTTP port.",
    )
    var_dir: Path = Field(Path("var"), description="Directory of the embedded default's files.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means an SQLite file under var_dir."
    )
    auto_migrate: bool | None = Field(
        None,
        description="Migrate the schema to head at start; default: on for SQLite only.",
    )
    services: Annotated[tuple[str, ...], NoDecode] = Field(
        SERVICE_NAMES, description="Comma-separated services to serve."
    )
    workers: int = Field(1, ge=1, le=64, description="Server processes sharing the ports.")
    reuse_port: bool = Field(
        False, description="Bind with SO_REUSEPORT so several processes share the ports."
    )
    shutdown_grace: float = Field(
        10.0, ge=0, le=300, description="Seconds in-flight calls get to finish on SIGTERM."
    )
    log_level: LogLevel = Field("info", description="The lowest level logged.")
    readiness_interval: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Seconds between readiness checks; gRPC health follows them.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="Log lines as JSON or readable text; auto: JSON unless stderr is a terminal.",
    )
    otlp_endpoint: str = Field(
        "",
        description="Export traces over OTLP/HTTP to this collector (http://host:4318; spans go "
        "to its /v1/traces); unset: no traces are recorded.",
    )
    trace_sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share of new traces recorded when tracing is on; a caller's sampled "
        "decision is followed.",
    )
    tenant_connections: int = Field(
        4,
        ge=1,
        le=1000,
        description="Pooled database connections one tenant's transactions may hold at once.",
    )
    stream_idle_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a client stream (ImportGraph, uploads) may wait between messages.",
    )
    stream_max_duration: float = Field(
        900.0, gt=0, le=86400, description="Seconds a whole client stream may last."
    )
    keys_dir: Path | None = Field(
        None, description="Directory of the token signing keys; default: var_dir/keys."
    )
    key_algorithm: Literal["EdDSA", "ES256"] = Field(
        "EdDSA", description="Algorithm of newly generated signing keys."
    )
    token_issuer: str = Field("intelgraph-conductor", min_length=1, description="JWT `iss`.")
    token_audience: str = Field("intelgraph", min_length=1, description="JWT `aud`.")
    token_leeway: float = Field(
        10.0,
        ge=0,
        le=300,
        description="Seconds of clock skew tolerated on exp/nbf/iat (a just-in-time "
        "token's exp, its grant's end, is held exactly).",
    )
    token_max_ttl: float = Field(
        3600.0, gt=0, le=7 * 86400, description="Longest lifetime `conductor token mint` grants."
    )
    policy_dir: Path | None = Field(
        None, description="Directory of the Rego policies; default: the shipped ones."
    )
    environment: Literal["development", "production"] = Field(
        "development",
        description="production: GraphQL runs persisted operations only (admin.write excepted) "
        "and serves no GraphiQL.",
    )
    graphql_operations_dir: Path | None = Field(
        None,
        description="Persisted GraphQL operations; default: the repository's graphql/operations.",
    )
    graphql_auto_register: bool = Field(
        False, description="Register ad-hoc documents sent with their id (APQ); off by default."
    )
    graphql_max_document_bytes: int = Field(
        16384, ge=256, le=1 << 20, description="Largest GraphQL document accepted, in bytes."
    )
    graphql_max_depth: int = Field(
        10, ge=2, le=50, description="Deepest selection nesting a GraphQL document may have."
    )
    graphql_max_fields: int = Field(
        500,
        ge=10,
        le=100_000,
        description="Most fields a GraphQL document may select (fragments expanded).",
    )
    graphql_max_stream_items: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Most messages a GraphQL field over a server-streaming RPC returns.",
    )
    access_pending_ttl: float = Field(
        86400.0, gt=0, le=30 * 86400, description="Seconds a pending access request lives."
    )
    access_reminder_lead: float = Field(
        300.0, ge=0, le=86400, description="Seconds before a grant ends that its holder is told."
    )
    webhook_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated webhook URLs notifications are POSTed to."
    )
    analytics_workers: int = Field(
        2,
        ge=1,
        le=16,
        description="Processes that run parameterised analytics packs (killed at deadlines).",
    )
    analytics_projection_cache_bytes: int = Field(
        2 * 1024**3,
        ge=0,
        description="Bytes of graph projections each analytics worker keeps mapped, across"
        " tenants (least recently used go first).",
    )
    analytics_results_cache_bytes: int = Field(
        512 * 1024**2,
        ge=0,
        description="Bytes of materialized pack rankings kept decoded in memory, across tenants.",
    )
    analytics_materialize_threads: int = Field(
        2, ge=1, le=64, description="Threads the background computation of whole-graph packs uses."
    )
    redis_url: str = Field(
        "", description="Optional Redis (redis://...) that replicas share revocations through."
    )
    metering: bool = Field(
        True, description="Record analytics pack runs and GraphQL operations as billing usage."
    )
    edge_cache: bool = Field(True, description="Cache results of persisted GraphQL reads.")
    edge_coalescing: bool = Field(
        True, description="Concurrent identical cache misses share one origin call."
    )
    edge_ttl: float = Field(
        30.0, gt=0, le=86400, description="Seconds a cached read stays fresh, unless it says."
    )
    edge_stale: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds past its TTL a read may be served while it is refreshed.",
    )
    edge_cap_bytes: int = Field(
        512 * 1024 * 1024, ge=0, description="Default per-tenant cache byte cap."
    )
    edge_shared_counters: bool | None = Field(
        None,
        description="Share cache invalidations between processes through the store when there is "
        "no Redis; default: on unless one process serves an SQLite store.",
    )
    edge_redis_prefix: str = Field(
        "intelgraph:edge:",
        min_length=1,
        description="Namespace of the edge cache's Redis keys (one platform's replicas share it).",
    )
    billing_keys_dir: Path | None = Field(
        None,
        description="Directory of the keys billing documents are signed with; "
        "default: var_dir/billing-keys (created on first use). Replicas must share it.",
    )
    tax_url: str = Field(
        "",
        description="Base URL (http(s)://) of the remote tax API invoices are taxed through "
        "(POST /v1/tax/calculate; `conductor billing tax-sandbox` serves one); unset: the "
        "built-in sandbox rate table, in process.",
    )
    tax_timeout: float = Field(
        5.0,
        ge=0.1,
        le=120,
        description="Seconds a tax calculation may take before the invoice waits tax_pending "
        "(and is retried).",
    )
    rag_keys_dir: Path | None = Field(
        None,
        description="Directory of the keys Rag proof manifests are signed with; "
        "default: var_dir/rag-keys (created on first use). Replicas must share it.",
    )
    evidence_keys_dir: Path | None = Field(
        None,
        description="Directory of the keys evidence bundles are signed with (Ed25519); "
        "default: var_dir/evidence-keys (created on first use).",
    )
    rag_max_document_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Largest document a tenant may upload, in bytes.",
    )
    rag_quota_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1,
        description="Bytes a tenant may hold in documents and unfinished uploads together.",
    )
    rag_ingest_timeout: float = Field(
        600.0,
        gt=0,
        description="Seconds reading one document (text, chunks, PII) may take before it is "
        "stopped and the upload refused.",
    )
    rag_ingest_slots: int = Field(
        2,
        ge=1,
        description="Documents a server process reads at once, each in a child process.",
    )
    rag_upload_ttl: float = Field(
        24 * 3600.0,
        gt=0,
        description="Seconds an unfinished upload lives after its last chunk before it is "
        "abandoned and its bytes freed.",
    )

    @field_validator("services", mode="before")
    @classmethod
    def _split_services(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("services")
    @classmethod
    def _known_services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SERVICE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}"
            )
        if not value:
            raise ValueError("name at least one service")
        return tuple(name for name in SERVICE_NAMES if name in value)

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(url.strip() for url in value.split(",") if url.strip())
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url}")
        return value

    @field_validator("var_dir")
    @classmethod
    def _named_var_dir(cls, value: Path) -> Path:
        if not str(value).strip() or str(value) == ".":
            raise ValueError("name the directory (an empty name would mean the current one)")
        return value

    @field_validator("policy_dir")
    @classmethod
    def _existing_policy_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory of Rego policies")
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("use the collector's http(s)://host:port (OTLP over HTTP, port 4318)")
        # The traces path is ours to add; given anyway (a common slip), it is taken off.
        return value.strip().rstrip("/").removesuffix("/v1/traces")

    @field_validator("tax_url")
    @classmethod
    def _tax_api_url(cls, value: str) -> str:
        if not value:
            return value
        if any(character.isspace() for character in value.strip()):
            raise ValueError("a URL has no spaces")
        parts = urlsplit(value.strip())
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        if port == 0:
            raise ValueError("the port must be a number from 1 to 65535")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("use the tax API's base URL: http(s)://host[:port][/path]")
        if parts.query or parts.fragment:
            raise ValueError("a base URL has no query or fragment")
        if parts.path.rstrip("/").endswith("/v1/tax/calculate"):
            raise ValueError("give the API's base URL; /v1/tax/calculate is added to it")
        # Its paths are ours to add under it (/v1/tax/calculate).
        return value.strip().rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value:
            return value
        if not value.startswith(_DATABASE_SCHEMES):
            raise ValueError(
                f"unsupported database URL scheme; use one of {', '.join(_DATABASE_SCHEMES)}"
            )
        try:
            url = make_url(value)
        except ValueError:
            raise ValueError("not a database URL (is the port a number?)") from None
        if url.get_backend_name() == "sqlite" and url.database in {None, "", ":memory:"}:
            raise ValueError(
                "an in-memory SQLite database is empty on every connection: name a file"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_database(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("database_url"):
            var_dir = Path(data.get("var_dir") or "var")
            data = {**data, "database_url": f"sqlite+aiosqlite:///{var_dir / 'conductor.db'}"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.workers > 1 and 0 in (self.grpc_port, self.http_port):
            raise ValueError("workers > 1 needs fixed ports: every worker binds the same ones")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "CONDUCTOR_TLS_CERT / --tls-cert and CONDUCTOR_TLS_KEY / --tls-key go together"
            )
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError(
                "CONDUCTOR_CLIENT_CA / --client-ca (mTLS) needs TLS: give --tls-cert and --tls-key"
            )
        if self.tls_cert is None and not self.insecure and not is_loopback(self.host):
            raise ValueError(
                f"CONDUCTOR_HOST / --host: {self.host} is reachable from other machines: serve "
                "TLS there (--tls-cert, --tls-key) or say --insecure"
            )
        if self.metrics_port and self.metrics_port in (self.grpc_port, self.http_port):
            raise ValueError(
                f"CONDUCTOR_METRICS_PORT / --metrics-port: {self.metrics_port} is also the gRPC or "
                "HTTP port; /metrics needs a port of its own"
            )
        return self

    @property
    def certificate_files(self) -> CertificateFiles | None:
        """The TLS files both listeners serve (None: plaintext)."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return CertificateFiles(self.tls_cert, self.tls_key, self.client_ca)

    @property
    def is_sqlite(self) -> bool:
        """True when the store is the embedded SQLite default (or another SQLite file)."""
        return self.database_url.startswith("sqlite")

    @property
    def document_keys_dir(self) -> Path:
        """Where the billing document signing keys live."""
        return self.billing_keys_dir or self.var_dir / "billing-keys"

    @property
    def manifest_keys_dir(self) -> Path:
        """Where the Rag manifest signing keys live."""
        return self.rag_keys_dir or self.var_dir / "rag-keys"

    @property
    def bundle_keys_dir(self) -> Path:
        """Where the evidence bundle signing keys live."""
        return self.evidence_keys_dir or self.var_dir / "evidence-keys"

    @property
    def signing_keys_dir(self) -> Path:
        """Where the token signing keys live."""
        return self.keys_dir or self.var_dir / "keys"

    @property
    def generates_keys_at_start(self) -> bool:
        """Whether `serve` creates a first key itself: only on the embedded default."""
        return self.keys_dir is None

    @property
    def migrates_at_start(self) -> bool:
        """Whether `serve` brings the schema to head itself."""
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def as_environment(self) -> dict[str, str]:
        """These settings as `CONDUCTOR_*` variables, e.g. to hand to worker processes."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, tuple):
                text = ",".join(value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"CONDUCTOR_{name.upper()}"] = text
        return env


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


class ConfigurationError(Exception):
    """The configuration is invalid; the message says which setting and why.

    Attributes:
        problems: One line per bad setting, naming its variable and flag.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  {line}" for line in problems))
        self.problems = problems


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, with `overrides` (e.g. flags) on top.

    Raises:
        ConfigurationError: A value is invalid; the message names each bad
            setting by its variable and flag.
    """
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            location = [str(part) for part in problem["loc"]]
            if location:
                name = location[0]
                where = f"CONDUCTOR_{name.upper()} / --{name.replace('_', '-')}"
            else:
                where = "settings"
            message = problem["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where != "settings" else message)
        raise ConfigurationError(problems) from None
