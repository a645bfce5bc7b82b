"""The watchdog: cleans up after a harness that was killed outright (SIGKILL, OOM killer).

The parent-death signal takes the servers down with the harness, but nobody is left to remove their
temp dirs. The first server a harness starts also starts this small process, which waits for the
harness to die (however it dies), waits a bounded moment for its servers to be gone, removes the
temp dirs it owned, and exits. It never signals anything. In normal runs it has nothing to do.

    python -m lockchaos.harness.servers.watchdog HARNESS_PID HARNESS_CREATE_TIME
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from lockchaos.harness.servers import faketime

MARKER = "lockchaos-owner.json"
_POLL_S = 0.2
_MAX_WATCH_S = 7 * 24 * 3600.0  # a week: far beyond any soak, still a bound
_SERVER_GRACE_S = 5.0

_started_for: int | None = None
_lock = threading.Lock()


def ensure_started() -> None:
    """Start the watchdog for this process once (again in a forked child, which is a new harness)."""
    global _started_for
    with _lock:
        if _started_for == os.getpid():
            return
        me = psutil.Process()
        subprocess.Popen(
            [sys.executable, "-m", "lockchaos.harness.servers.watchdog", str(me.pid), repr(me.create_time())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
        _started_for = me.pid


def _alive(pid: int, create_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == create_time and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _owned_dirs(owner: int) -> list[tuple[Path, int]]:
    found = []
    for marker in Path(tempfile.gettempdir()).glob(f"lockchaos-*/{MARKER}"):
        try:
            info = json.loads(marker.read_text())
            if int(info["owner_pid"]) == owner and marker.stat().st_uid == os.getuid():
                found.append((marker.parent, int(info.get("server_pid") or 0)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _server_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def watch(owner: int, create_time: float) -> int:
    deadline = time.monotonic() + _MAX_WATCH_S
    while _alive(owner, create_time) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    removed = 0
    grace = time.monotonic() + _SERVER_GRACE_S
    for workdir, server in _owned_dirs(owner):
        while server > 0 and not _server_gone(server) and time.monotonic() < grace:
            time.sleep(0.05)  # the death signal is on its way; a dir in use is not ours to take
        # libfaketime's /dev/shm files outlive a killed server: every recorded pid that is gone, even
        # when the server itself outlived the grace (its dir is then left for the next orphan sweep).
        faketime.remove_recorded_residue(workdir, lambda pid: not _server_gone(pid))
        if server <= 0 or _server_gone(server):
            if server > 0 and (workdir / faketime.CONTROL_NAME).exists():
                faketime.remove_residue(server)
            shutil.rmtree(workdir, ignore_errors=True)
            removed += 1
    return removed


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]))
