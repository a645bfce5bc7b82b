"""A clock the harness can jump under a real ``redis-server``: Debian's libfaketime and a control file.

Why it is launched this way (measured; bench/probe_clock_faults.py repeats the experiment):

- ``LD_PRELOAD=libfaketime.so.1`` alone hangs Debian's redis-server 7.0.15 at start. libfaketime
  initialises lazily, from the first faked call; jemalloc makes that call (``clock_gettime``,
  ``pthread_cond_init``) while it holds its own mutex during its own initialisation, and libfaketime's
  initialisation allocates (a failed ``dlsym`` of ``__ftime`` and of ``timer_settime@GLIBC_2.2``
  builds its error message with ``malloc``; ``sem_open`` for its shared state): jemalloc then waits on
  the mutex it holds (gdb backtrace, wolfcw/libfaketime#130). ``FAKETIME_DONT_FAKE_MONOTONIC``,
  ``MALLOC_CONF`` and the MT variant do not change that.
- Preloading glibc *after* libfaketime (``libfaketime.so.1:libc.so.6``) binds ``malloc``/``free`` to
  glibc ahead of jemalloc, so that initialisation never re-enters jemalloc. Redis then allocates
  through glibc (it still calls jemalloc's ``mallctl``/``nallocx``, which only read statistics and
  size classes): the allocator changes, the lock semantics under test do not.
- Redis expires keys on ``mstime()`` (``gettimeofday``, the wall clock): faking that clock alone is
  what an NTP step does, so ``FAKETIME_DONT_FAKE_MONOTONIC=1`` leaves the event loop's timers real.
- ``FAKETIME_NO_CACHE=1``: the control file is read at each clock call, so a jump is in force within
  milliseconds of ``os.replace`` (with the default cache it took up to a second).

libfaketime keeps ``/dev/shm/faketime_shm_<pid>`` and ``sem.faketime_sem_<pid>`` per process and
removes them only at a clean exit. So that no path can lose track of them (a kill -9, a harness that
dies between fork and recording the server's pid, a watchdog that gives up waiting), the server is
launched through ``sh``, which appends its own pid to ``faketime.pids`` in the server's workdir and then
``exec``s the server under ``LD_PRELOAD`` (the same pid): every process that ever ran under libfaketime
is on record before libfaketime starts, and ``remove_recorded_residue`` clears the dead ones'.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

LIBFAKETIME_GLOB = "/usr/lib/*/faketime/libfaketime.so.1"
CONTROL_NAME = "faketime.rc"
PIDS_NAME = "faketime.pids"
_SHM_DIR = Path("/dev/shm")


class FaketimeMissing(Exception):
    """libfaketime is not installed, so no clock fault can reach a server process."""


def libfaketime_path() -> str:
    found = sorted(glob.glob(LIBFAKETIME_GLOB))
    if not found:
        raise FaketimeMissing(
            "libfaketime not found (install Debian's package faketime: apt-get install faketime)"
        )
    return found[0]


def missing_reason() -> str | None:
    """Why no clock fault can be launched here, or None when libfaketime is installed."""
    try:
        libfaketime_path()
    except FaketimeMissing as exc:
        return str(exc)
    return None


class FaketimeClock:
    """The offset of one server's wall clock from the real one, held in a control file it re-reads.

    The offset is cumulative, like the fake's ``jump_clock``: +2 s then -1 s leaves the clock 1 s
    ahead. It survives a restart of the server, as a host's stepped clock would.
    """

    def __init__(self, workdir: Path) -> None:
        self.control = workdir / CONTROL_NAME
        self.offset_ms = 0
        self._write()

    def env(self) -> dict[str, str]:
        """The variables that put a child under this clock (``libc.so.6`` resolved by the loader)."""
        return {
            "LD_PRELOAD": f"{libfaketime_path()}:libc.so.6",
            "FAKETIME_TIMESTAMP_FILE": str(self.control),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """``argv`` and ``env`` launched so that the pid is on record before libfaketime loads.

        ``sh`` itself runs without the preload (it would create shared memory of its own under the
        same pid); ``env`` then puts it on the server's exec alone."""
        env = {**env, **self.env()}
        preload = env.pop("LD_PRELOAD")
        pids = self.control.parent / PIDS_NAME
        script = 'echo $$ >> "$1" && preload="$2" && shift 2 && exec env "LD_PRELOAD=$preload" "$@"'
        return ["/bin/sh", "-c", script, "lockchaos-faketime", str(pids), preload, *argv], env

    def jump(self, delta_ms: int) -> None:
        """Step the wall clock by ``delta_ms``; every clock read from now on sees it."""
        self.offset_ms += delta_ms
        self._write()

    def _write(self) -> None:
        # Replaced atomically: a reader between truncate and write would see no offset at all.
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(f"{self.offset_ms / 1000:+.3f}\n")
        os.replace(tmp, self.control)


def recorded_pids(workdir: Path) -> list[int]:
    """Every pid launched under libfaketime from ``workdir`` (see the module's docstring)."""
    try:
        text = (workdir / PIDS_NAME).read_text()
    except OSError:
        return []
    return [int(line) for line in text.split() if line.isdigit()]


def remove_recorded_residue(workdir: Path, alive: Callable[[int], bool]) -> None:
    """Remove the /dev/shm files of every recorded pid that ``alive`` says is gone (a live one's are
    its own to remove at exit; a recycled pid's files, if any, are libfaketime's of that pid's)."""
    for pid in recorded_pids(workdir):
        if not alive(pid):
            remove_residue(pid)


def remove_residue(pid: int) -> None:
    """Remove the shared-memory files libfaketime left for ``pid`` (it removes them only on a clean exit)."""
    for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
        (_SHM_DIR / name).unlink(missing_ok=True)
