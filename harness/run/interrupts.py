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
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

STOP = threading.Event()
received: int | None = None
_deferred = 0
_stopped_at = 0.0

GRACE_S = 3.0
"""After a stop, checks and reports of what was recorded get this long; then the run ends without them."""


class Overdue(Exception):
    """The run was stopped and its grace ran out before the checks or the report were done."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Inside ``deferred()`` the first signal only asks the drivers to stop; a second one insists."""
    global received, _stopped_at
    first = not STOP.is_set()
    received = signum
    if first:
        _stopped_at = time.monotonic()
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


def overdue() -> bool:
    """A stop was asked for more than ``GRACE_S`` ago."""
    return STOP.is_set() and time.monotonic() - _stopped_at > GRACE_S


def within_grace(fn: Callable[[], T], what: str) -> T:
    """``fn()``, unless a stop comes and ``fn`` is still busy ``GRACE_S`` after it: then ``Overdue``.

    Judging a long history takes minutes and no checker polls for a stop, so ``fn`` runs in a daemon
    thread that is abandoned (it only computes; a file it writes is written atomically) when the
    grace runs out: the harness then ends within seconds of the signal in every phase.
    """
    if overdue():  # nothing more is started once the grace is over
        raise Overdue(f"stopped before the {what} was done")
    box: list[tuple[bool, object]] = []

    def body() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((False, exc))

    worker = threading.Thread(target=body, name=f"lockchaos-{what}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
        if worker.is_alive() and overdue():
            raise Overdue(f"stopped before the {what} was done")
    ok, value = box[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


def exit_status() -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (received or signal.SIGINT)
