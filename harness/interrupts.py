"""Ctrl-C and SIGTERM end a run the same orderly way: stop the scenarios, tear down, keep histories.

Python's default SIGTERM kills the interpreter without running ``finally`` blocks or ``atexit``:
servers would be left to the parent-death signal and temp dirs to the watchdog. Turning SIGTERM into
the same KeyboardInterrupt as Ctrl-C lets every teardown path run. ``STOP`` tells threads that are
not the main thread (each backend's driver) to wind down at the next opportunity.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP = threading.Event()
received: int | None = None
_deferred = 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Inside ``deferred()`` the first signal only asks the drivers to stop; a second one insists."""
    global received
    first = not STOP.is_set()
    received = signum
    STOP.set()
    if _deferred and first:
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While worker threads run, a signal must not raise at a random point of the main thread."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1


def install() -> None:
    """Call from the main thread before a run: both signals raise KeyboardInterrupt there."""
    global received
    received = None
    STOP.clear()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def exit_status() -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (received or signal.SIGINT)
