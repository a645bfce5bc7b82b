"""Clocks injected into the fake and the driver, so one code path runs on real and virtual time."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

NS_PER_MS = 1_000_000
"""Nanoseconds per millisecond: clocks count nanoseconds, TTLs and timeouts are declared in milliseconds."""


@runtime_checkable
class Clock(Protocol):
    """Monotonic nanoseconds plus a way to wait on them.

    ``sleep`` is the only place code may wait: on virtual time it is where simulated time advances,
    so every wait in the fake and in the driver goes through it.
    """

    def now_ns(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """Real time: ``time.monotonic_ns`` and ``time.sleep``."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """Time that moves only when told: single-threaded tests and property tests.

    ``sleep`` advances the clock itself, so code that waits (a paused server, a client timeout)
    finishes instantly and deterministically.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        self.advance_ns(round(seconds * 1e9))

    def advance_ns(self, delta_ns: int) -> None:
        if delta_ns < 0:
            raise ValueError("a monotonic clock cannot go back")
        with self._lock:
            self._now += delta_ns

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)


REAL_CLOCK = MonotonicClock()
