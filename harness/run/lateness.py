"""How late this machine runs what it schedules, measured during a real-time run and recorded in its history.

The checkers bound when a call that ended without an answer (indeterminate) can still take effect at
the server: its request may sit in a socket until the server process is scheduled. On an idle machine
that is well under the checkers' fixed slack (``model.EPSILON_NS``, 5 ms); on a loaded one (a stress
run's 32 threads on two cores beside CI) a request was seen to land 10-15 ms after its client gave up,
and a correct lock was reported for refusing a key that lease still held. A fixed larger slack would
blunt every real-time check to excuse a moment of load; instead a thread sleeps in short steps for the
whole run, and a window in which a wake-up came later than the slack allows is written to the history
(``late`` notes). The checkers widen an indeterminate call's reach by the lateness measured around it,
and by nothing where the machine kept time. The harness's process is not the only one a loaded machine
delays: a second probe times a read of the server itself (``ServerProbe``). Virtual-time runs schedule
nothing late and record none.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lockchaos.backends.base import LockBackend
from lockchaos.harness.run.history import NoteRecord
from lockchaos.harness.run.runtime import RunStopped

STEP_S = 0.002
"""The probe's sleep: short, so that a wake-up's overshoot is the machine's delay, not the step."""
WINDOW_NS = 100_000_000
"""Lateness is reported per window of this length: the checkers look it up around each call."""
REPORTED_NS = 2_000_000
"""A window whose worst wake-up came at most this late is not recorded: the fixed slack covers it."""
REPORTED_SERVER_NS = 5_000_000
"""The same for the server probe's round trips, which take a few ms on etcd even on an idle machine."""
SERVER_EVERY_S = 0.01
"""The server probe's pace: a hundred reads a second, nothing to a server that takes thousands."""
PROBE_KEY = "lockchaos/server-probe"
"""A key no worker acquires: the probe only reads it."""
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


class ProbeThread:
    """A daemon thread that watches something for as long as the run records and writes notes of what
    it saw; once ``stop`` returns it writes nothing more (the run's end note is the history's last)."""

    name = "probe"

    def __init__(self, now_ns: Callable[[], int], record: Callable[[NoteRecord], None]) -> None:
        self._now_ns = now_ns
        self._record = record
        self._stop = threading.Event()
        self._recording = threading.Lock()
        self._silenced = False  # set once stop() returns: nothing may follow the run's end note
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Idempotent; the last note is written before this returns (if the probe's own call returns
        within a second), so before the run's end note."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        with self._recording:
            self._silenced = True

    def _note(self, note: NoteRecord) -> None:
        with self._recording:
            if not self._silenced:
                self._record(note)

    def _run(self) -> None:
        try:
            self._probe()
        except RunStopped:  # the in-process fake's clock ends its calls with the run
            return
        except Exception:  # the history took no more (a full disk): the workers' records, which fail
            return  # alike, are what reports it; the probe must never print a traceback of its own
        finally:
            self._close()

    def _probe(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class _Probe(ProbeThread):
    """Measures one delay after another and writes the worst of each window that exceeded ``reported_ns``."""

    where = ""
    reported_ns = REPORTED_NS

    def _measure(self) -> int:
        """One delay, in ns."""
        raise NotImplementedError

    def _probe(self) -> None:
        window_from = self._now_ns()
        worst = 0
        while not self._stop.is_set():  # bounded by the run: stop() ends it
            worst = max(worst, self._measure())
            now = self._now_ns()
            if now - window_from >= WINDOW_NS:
                self._report(window_from, now, worst)
                window_from, worst = now, 0
        self._report(window_from, self._now_ns(), worst)

    def _report(self, start_ns: int, end_ns: int, late_ns: int) -> None:
        if late_ns > self.reported_ns:
            self._note(NoteRecord(LATE_NOTE, end_ns, {"window_ms": round((end_ns - start_ns) / 1e6, 3),
                                                      "late_ms": round(late_ns / 1e6, 3), "where": self.where}))


class SchedulingProbe(_Probe):
    """Sleeps ``STEP_S`` at a time on the run's clock: how late the harness's own process is woken."""

    name = "scheduling-probe"
    where = "harness"

    def _measure(self) -> int:
        due = self._now_ns() + int(STEP_S * 1e9)
        time.sleep(STEP_S)
        return self._now_ns() - due


class ServerProbe(_Probe):
    """Asks the server who holds a key no worker uses, through a client of its own that no fault
    touches, every ``SERVER_EVERY_S``: how long a request sent then waits for the server to act.

    Measured here under load (two CPU hogs beside a test run), a Redis PING's round trip reached 454 ms
    while the harness's own process was never woken more than 0.5 ms late in the same 100 ms: a loaded
    machine delays the server, which the scheduling probe cannot see. A call that fails counts its time
    too (a frozen server's is the freeze; a refused connection's, next to nothing)."""

    name = "server-probe"
    where = "server"
    reported_ns = REPORTED_SERVER_NS

    def __init__(self, now_ns: Callable[[], int], record: Callable[[NoteRecord], None],
                 open_client: Callable[[], LockBackend]) -> None:
        super().__init__(now_ns, record)
        self._open_client = open_client
        self._client: LockBackend | None = None

    def _measure(self) -> int:
        if self._stop.wait(SERVER_EVERY_S):
            return 0
        start = self._now_ns()
        try:
            if self._client is None:
                self._client = self._open_client()
            self._client.holder(PROBE_KEY)
        except Exception:  # unreachable, frozen, refusing: how long it took is the measure
            pass
        return self._now_ns() - start

    def _close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
