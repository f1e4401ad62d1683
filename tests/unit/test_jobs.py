"""A failing background job is said when it fails, now and then while it lasts, and when it ends."""

from __future__ import annotations

import logging

import pytest

from servers.jobs import MAX_BACKOFF_S, REMIND_S, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_at_its_start_now_and_then_and_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="servers.jobs")
    clock = Clock()
    outage = Outage("background job edge.generations", clock=clock)
    for _ in range(100):  # every half second for 50 s: one line, with its traceback
        outage.failed(ConnectionError("Redis is down"))
        clock.now += 0.5
    clock.now += REMIND_S
    outage.failed(ConnectionError("Redis is down"))
    outage.recovered()
    outage.recovered()
    lines = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert lines == [
        (logging.ERROR, "background job edge.generations failed; retrying"),
        (
            logging.ERROR,
            "background job edge.generations still failing: 101 attempts in 350s, "
            "the last: Redis is down",
        ),
        (
            logging.WARNING,
            "background job edge.generations recovered after 101 failed attempts in 350s",
        ),
    ]
    assert caplog.records[0].exc_info is not None


def test_retries_back_off_to_a_cap_and_return_to_the_interval_once_it_works() -> None:
    outage = Outage("job", clock=Clock())
    assert outage.pause(0.5) == 0.5
    pauses = []
    for _ in range(6):
        outage.failed(OSError("down"))
        pauses.append(outage.pause(0.5))
    assert pauses == [0.5, 1.0, 2.0, 4.0, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert outage.pause(3600) == 3600  # a slow job never waits less than its interval
    outage.recovered()
    assert outage.pause(0.5) == 0.5
