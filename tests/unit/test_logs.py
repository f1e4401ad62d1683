"""Log lines: tracebacks in both formats, never a frame's locals; noisy libraries held back."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

from servers.logs import Throttle

FAILING = textwrap.dedent(
    """
    import logging, sys
    from servers.logs import configure_logging
    configure_logging("info", sys.argv[1])

    def charge(authorization="Bearer eyJSECRET.PART.SIG"):
        return 1 / 0

    try:
        charge()
    except ZeroDivisionError:
        logging.getLogger("servers.example").exception("unhandled error (incident i-1)")
    logging.getLogger("httpx").info("HTTP Request: POST http://hooks.example/s3cr3t")
    """
)


def run(log_format: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", FAILING, log_format],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stderr


def test_a_json_line_carries_the_traceback_of_a_standard_library_record() -> None:
    (line,) = [json.loads(text) for text in run("json").splitlines() if text.startswith("{")]
    assert line["event"] == "unhandled error (incident i-1)"
    assert line["level"] == "error"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ZeroDivisionError: division by zero" in line["exception"]
    assert "exc_info" not in line


def test_readable_lines_show_the_traceback_but_no_frame_locals_and_no_request_urls() -> None:
    text = run("console")
    assert "ZeroDivisionError: division by zero" in text
    assert "eyJSECRET" not in text
    assert "s3cr3t" not in text


def record(name: str, created: float, message: str = "Failed to export batch") -> logging.LogRecord:
    entry = logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)
    entry.created = created
    return entry


def test_a_repeated_library_complaint_passes_once_a_minute_and_counts_the_rest() -> None:
    throttle = Throttle(("opentelemetry",), interval_s=60)
    exporter = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    assert throttle.filter(record(exporter, 0.0))
    assert not throttle.filter(record(exporter, 5.0))
    assert not throttle.filter(record(exporter, 10.0))
    assert throttle.filter(record(exporter, 15.0, "another complaint"))
    later = record(exporter, 61.0)
    assert throttle.filter(later)
    assert later.getMessage() == "Failed to export batch (and 2 more like it in the last 60s)"
    assert throttle.filter(record("servers.jobs", 5.0))
    assert throttle.filter(record("servers.jobs", 6.0))


def test_the_platforms_own_outage_warnings_are_throttled_too() -> None:
    """A tax API or a Redis that stays down says so once a minute, not per call."""
    from servers.logs import _REPETITIVE  # noqa: PLC0415 - the configured list itself

    throttle = Throttle(_REPETITIVE, interval_s=60)
    for name in ("servers.billing.tax", "servers.edge.shared", "servers.access.revocation"):
        assert throttle.filter(record(name, 0.0))
        assert not throttle.filter(record(name, 1.0))
    assert throttle.filter(record("servers.billing.invoices", 1.0))
