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

import structlog
from opentelemetry import trace

LogFormat = Literal["auto", "json", "console"]
#: Libraries held at a floor level: (logger, level).
_QUIET = (("alembic", logging.WARNING), ("aiosqlite", logging.INFO))


def _trace_ids(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Inside a recorded span, the line names its trace and span (to find one from the other)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
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
        else structlog.dev.ConsoleRenderer(colors=False)
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
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, floor in _QUIET:
        logging.getLogger(name).setLevel(max(floor, root.level))
