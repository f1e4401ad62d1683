"""Finds event-loop callbacks that hold the loop too long in the serving path.

One callback that computes for 100 ms stalls every call the process serves
(a health check included) for as long. Every callback any event loop runs
during the tests is timed here in CPU time of the loop's thread (so a busy
machine does not count against it), and each one over `LIMIT_S` is recorded
unless it belongs to the test itself: a step of a task whose coroutine is
defined in the tests, or in pytest's own machinery (a test may compute what it
likes between its calls). Time the garbage collector spends in the callback is
left out: a collection pauses whatever runs when it strikes, and how often it
strikes depends on the whole test process, not on the callback. A test fails
when the serving path it exercised held the loop longer than that
(`conftest.py` checks after every test).

With `SLOW_CALLBACK_STACKS=1` in the environment, a watchdog thread also
takes the stack of a callback still running after `LIMIT_S` (wall time), and
the failure shows where the loop was held.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: CPU seconds one callback of the serving path may hold its event loop.
LIMIT_S = float(os.environ.get("SLOW_CALLBACK_LIMIT_S", "0.1"))

_TESTS_DIR = str(Path(__file__).resolve().parents[1])
_NOT_SERVING = (_TESTS_DIR, "/_pytest/", "/pytest_asyncio/", "/hypothesis/")


@dataclass(frozen=True)
class SlowCallback:
    """One callback that held its loop too long (and where, when stacks are taken)."""

    what: str
    cpu_s: float
    stack: str = ""


_recorded: list[SlowCallback] = []
_lock = threading.Lock()
#: With stacks on: per loop thread, (when its current callback started, the stack taken).
_running: dict[int, list[Any]] = {}
#: CPU seconds the garbage collector has spent, per thread.
_collecting: dict[int, float] = {}
_collection_started: dict[int, float] = {}


def _count_collections(phase: str, _info: dict[str, int]) -> None:
    thread = threading.get_ident()
    if phase == "start":
        _collection_started[thread] = time.thread_time()
    elif thread in _collection_started:
        spent = time.thread_time() - _collection_started.pop(thread)
        _collecting[thread] = _collecting.get(thread, 0.0) + spent


def _watch() -> None:
    """Take the stack of every callback that has run past the limit (once per callback)."""
    while True:
        time.sleep(LIMIT_S / 4)
        frames = sys._current_frames()
        now = time.monotonic()
        for thread_id, state in list(_running.items()):
            started, stack = state
            if started is not None and not stack and now - started > LIMIT_S:
                frame = frames.get(thread_id)
                if frame is not None:
                    state[1] = "".join(traceback.format_stack(frame)[-12:])


def _origin(handle: asyncio.Handle) -> tuple[str, str]:
    """(what the callback is, the file its coroutine is defined in, if a task step)."""
    callback: Any = handle._callback  # type: ignore[attr-defined] # asyncio keeps it private
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coroutine: Any = task.get_coro()
        code = getattr(coroutine, "cr_code", None) or getattr(coroutine, "ag_code", None)
        filename = code.co_filename if code is not None else ""
        return f"task {task.get_name()} running {getattr(coroutine, '__qualname__', coroutine)}", (
            filename
        )
    return repr(handle), ""


def install() -> None:
    """Time every callback of every event loop from now on (idempotent)."""
    handle_class: Any = asyncio.events.Handle
    if getattr(handle_class._run, "_timed", False):
        return
    untimed: Callable[[asyncio.Handle], None] = handle_class._run
    stacks = os.environ.get("SLOW_CALLBACK_STACKS") == "1"
    if stacks:
        threading.Thread(target=_watch, name="slow-callback-watch", daemon=True).start()

    gc.callbacks.append(_count_collections)

    def timed(handle: asyncio.Handle) -> None:
        thread = threading.get_ident()
        state = None
        if stacks:
            state = _running.setdefault(thread, [None, ""])
            state[0], state[1] = time.monotonic(), ""
        collecting = _collecting.get(thread, 0.0)
        started = time.thread_time()
        untimed(handle)
        spent = time.thread_time() - started - (_collecting.get(thread, 0.0) - collecting)
        stack = ""
        if state is not None:
            stack, state[0] = state[1], None
        if spent > LIMIT_S:
            what, filename = _origin(handle)
            if not any(marker in filename for marker in _NOT_SERVING):
                with _lock:
                    _recorded.append(SlowCallback(what, spent, stack))

    timed._timed = True  # type: ignore[attr-defined]
    handle_class._run = timed


def collected() -> list[SlowCallback]:
    """The slow callbacks recorded since the last call, and forget them."""
    with _lock:
        found = list(_recorded)
        _recorded.clear()
    return found
