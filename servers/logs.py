"""Logging for every module: structured lines, JSON in production, readable in development.

structlog renders both its own events and the standard library's (every
library's records go through the same processors), adding the time, level,
logger and — inside a call — the call's request id, and inside a traced call its
trace and span ids. Library noise stays at its own level: alembic and aiosqlite
narrate at INFO/DEBUG and are held at WARNING and INFO, whatever level the
platform logs at.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace

LogFormat = Literal["auto", "json", "console"]
#: Libraries held at a floor level: (logger, level). httpx and httpcore log every request's
#: URL at INFO, and a webhook's URL may carry its secret.
_QUIET = (
    ("alembic", logging.WARNING),
    ("aiosqlite", logging.INFO),
    ("httpx", logging.WARNING),
    ("httpcore", logging.WARNING),
)
#: Loggers that repeat one complaint while something stays down (a trace collector, the tax
#: API, Redis under the edge cache and the revocation fan-out): each message is let through
#: once per `THROTTLE_S`, saying how many were held back.
_REPETITIVE = (
    "opentelemetry",
    "servers.billing.tax",
    "servers.edge.shared",
    "servers.access.revocation",
)
THROTTLE_S = 60.0


class Throttle(logging.Filter):
    """Lets each message of the `loggers` (and their children) through once per `interval_s`.

    Messages are told apart by logger and format; the next one let through says
    how many were held back. Other loggers' records pass untouched.
    """

    def __init__(self, loggers: tuple[str, ...], interval_s: float = THROTTLE_S) -> None:
        super().__init__()
        self._loggers = loggers
        self._interval_s = interval_s
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether `record` is logged; it is counted when it is not."""
        if not any(
            record.name == name or record.name.startswith(f"{name}.") for name in self._loggers
        ):
            return True
        key = (record.name, record.msg if isinstance(record.msg, str) else repr(record.msg))
        last, held = self._seen.get(key, (float("-inf"), 0))
        if record.created - last < self._interval_s:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (record.created, 0)
        if held and isinstance(record.msg, str):
            record.msg = (
                f"{record.msg} (and {held} more like it in the last {self._interval_s:.0f}s)"
            )
        return True


def url_origin(url: str) -> str:
    """A URL as logs may show it: scheme, host and port, never credentials, path or query.

    A webhook's path often is its secret; a collector's URL may carry a password.

    >>> url_origin("https://user:pw@hooks.example:8443/services/T0/B0/s3cr3t?x=1")
    'https://hooks.example:8443'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _trace_ids(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Inside a recorded span, the line names its trace and span (to find one from the other)."""
    context = trace.get_current_span().get_span_context()
    # Sampled, not recording: the HTTP span ends as the response's last byte goes, before
    # its line is written; an unsampled trace is one nobody keeps.
    if context.is_valid and context.trace_flags.sampled:
        event.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event.setdefault("span_id", trace.format_span_id(context.span_id))
    return event


def _processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        _trace_ids,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def route_to_stdlib() -> None:
    """Send structlog's events to the standard library's loggers, unless configured already.

    Each record's message is the event's dictionary. An embedded platform (tests, a
    library user) then logs through whatever handlers the host set up;
    `configure_logging` adds the rendering.
    """
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            *_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure_logging(level: str, log_format: LogFormat = "auto") -> None:
    """Send every log record to stderr as one structured line.

    Args:
        level: The lowest level logged ("debug", "info", ...).
        log_format: "json", "console", or "auto": JSON unless stderr is a terminal.
    """
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        # Plain tracebacks: the default shows each frame's local variables, tokens included.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            *_processors(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Throttle(_REPETITIVE))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # The standard library's records bring exc_info: as a traceback, as ours do.
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, floor in _QUIET:
        logging.getLogger(name).setLevel(max(floor, root.level))
