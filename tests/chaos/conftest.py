"""The chaos suite's platform: a private PostgreSQL and Redis, and two replicas, per case.

Without PostgreSQL's server programs or redis-server the cases are skipped and
say so; under CI=true that is an error, so CI never passes by skipping them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import ROWS, Stack, write_table
from tests.support.cluster import PrivatePostgres, PrivateRedis
from tests.support.serving import IN_CI

MISSING = "PostgreSQL's server programs (initdb, pg_ctl) and redis-server"


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """Two running replicas on a private PostgreSQL and Redis; everything stopped afterwards.

    A test marked `tax_api` gets a remote tax API (a sandbox process behind a proxy).
    """
    if not (PrivatePostgres.available() and PrivateRedis.available()):
        if IN_CI:
            pytest.fail(f"CI=true, but the chaos cases' {MISSING} are not installed")
        pytest.skip(f"the chaos cases need {MISSING}: apt-get install postgresql redis-server")
    built = Stack(tmp_path, tax_api=request.node.get_closest_marker("tax_api") is not None)
    try:
        built.start()
        yield built
    finally:
        built.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the results table of the cases that ran."""
    if ROWS:
        terminalreporter.write_sep("-", "chaos results (seconds from the start of the load)")
        terminalreporter.write_line(write_table())
