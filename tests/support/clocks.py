"""Clocks the tests move by hand, for code that takes its clock as an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """A wall clock (aware UTC datetimes) that stands still until the test advances it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now if now is not None else datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class SecondsClock:
    """A monotonic clock in seconds that stands still until the test advances it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
