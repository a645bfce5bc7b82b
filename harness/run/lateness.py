"""How late this machine runs what it schedules, measured during a real-time run and recorded in its history.

The checkers bound when a call that ended without an answer (indeterminate) can still take effect at
the server: its request may sit in a socket until the server process is scheduled. On an idle machine
that is well under the checkers' fixed slack (``model.EPSILON_NS``, 5 ms); on a loaded one (a stress
run's 32 threads on two cores beside CI) a request was seen to land 10-15 ms after its client gave up,
and a correct lock was reported for refusing a key that lease still held. A fixed larger slack would
blunt every real-time check to excuse a moment of load; instead a thread sleeps in short steps for the
whole run, and a window in which a wake-up came later than the slack allows is written to the history
(``late`` notes). The checkers widen an indeterminate call's reach by the lateness measured around it,
and by nothing where the machine kept time. Virtual-time runs schedule nothing late and record none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lockchaos.harness.run.history import NoteRecord

STEP_S = 0.002
"""The probe's sleep: short, so that a wake-up's overshoot is the machine's delay, not the step."""
WINDOW_NS = 100_000_000
"""Lateness is reported per window of this length: the checkers look it up around each call."""
REPORTED_NS = 2_000_000
"""A window whose worst wake-up came at most this late is not recorded: the fixed slack covers it."""
LATE_NOTE = "late"


@dataclass(frozen=True, slots=True)
class LateWindow:
    """A stretch of the run during which something scheduled could run ``late_ns`` after it was due."""

    start_ns: int
    end_ns: int
    late_ns: int


MAX_LATE_MS = 366 * 24 * 3600 * 1000
"""No window or lateness outlasts the longest run (``history.MAX_TIME_NS``)."""


def late_window(time_ns: int, data: dict[str, object]) -> LateWindow | None:
    """A ``late`` note's window (the note is written at its end); None if the note is malformed."""
    window, late = data.get("window_ms"), data.get("late_ms")
    if not isinstance(window, int | float) or not isinstance(late, int | float):
        return None
    if not (0 <= window <= MAX_LATE_MS and 0 <= late <= MAX_LATE_MS):  # NaN fails both; 1e308 would overflow
        return None
    return LateWindow(time_ns - int(window * 1_000_000), time_ns, int(late * 1_000_000))


class SchedulingProbe:
    """A daemon thread sleeping ``STEP_S`` at a time on the run's clock, for as long as the run records."""

    def __init__(self, now_ns: Callable[[], int], record: Callable[[NoteRecord], None]) -> None:
        self._now_ns = now_ns
        self._record = record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduling-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Idempotent; the last window is reported before this returns, so before the run's end note."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)

    def _run(self) -> None:
        window_from = self._now_ns()
        worst = 0
        while not self._stop.is_set():  # bounded by the run: __exit__ ends it
            due = self._now_ns() + int(STEP_S * 1e9)
            time.sleep(STEP_S)
            now = self._now_ns()
            worst = max(worst, now - due)
            if now - window_from >= WINDOW_NS:
                self._report(window_from, now, worst)
                window_from, worst = now, 0
        self._report(window_from, self._now_ns(), worst)

    def _report(self, start_ns: int, end_ns: int, late_ns: int) -> None:
        if late_ns > REPORTED_NS:
            self._record(NoteRecord(LATE_NOTE, end_ns, {"window_ms": round((end_ns - start_ns) / 1e6, 3),
                                                        "late_ms": round(late_ns / 1e6, 3)}))
