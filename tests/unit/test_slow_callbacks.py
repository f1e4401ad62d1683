"""The detector of callbacks that hold the event loop (tests/slow_callbacks.py) detects."""

from __future__ import annotations

import asyncio
import time

from tests.support import slow_callbacks


def _spin(seconds: float) -> None:
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        sum(range(1000))


async def _serving_work() -> None:
    _spin(slow_callbacks.LIMIT_S * 1.5)


async def _quick_work() -> None:
    _spin(slow_callbacks.LIMIT_S / 4)


def test_a_serving_callback_over_the_limit_is_caught_and_a_tests_own_is_not() -> None:
    # The coroutine passes for serving code: it is not defined under tests/.
    _serving_work.__code__ = _serving_work.__code__.replace(co_filename="/srv/servers/fake.py")
    _quick_work.__code__ = _quick_work.__code__.replace(co_filename="/srv/servers/fake.py")

    async def main() -> None:
        await asyncio.create_task(_quick_work())
        await asyncio.create_task(_serving_work())
        _spin(slow_callbacks.LIMIT_S * 1.5)  # the test's own work, in the test's own task

    slow_callbacks.collected()
    asyncio.run(main())
    found = slow_callbacks.collected()
    assert [entry.what.split(" running ")[-1] for entry in found] == ["_serving_work"]
    assert found[0].cpu_s > slow_callbacks.LIMIT_S
