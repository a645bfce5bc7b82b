"""Nothing outlives a run: exit, exception, Ctrl-C, SIGTERM or SIGKILL of the harness mid-soak.

Each test runs the real CLI in a subprocess against real servers, ends it one way, and checks with
psutil that no server it started survives and that no temp dir it made is left, and that the history
it wrote up to then is still judged by ``lockchaos check``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from lockchaos.harness.cli import main

pytestmark = [pytest.mark.redis, pytest.mark.etcd]

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("redis-server", "etcd")


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def start_soak(out: Path, *args: str) -> subprocess.Popen[bytes]:
    """The CLI in its own process; its output goes to a file so that no pipe can fill up and block it."""
    argv = [sys.executable, "-m", "lockchaos", "soak", "--out", str(out), "--seed", "1", *args]
    log = (out.parent / "harness.log").open("wb")
    return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def servers_of(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [c for c in proc.children(recursive=True) if c.name() in SERVERS]
    except psutil.NoSuchProcess:
        return []


def dirs_of(pid: int) -> list[Path]:
    found = []
    for marker in Path(tempfile.gettempdir()).glob("lockchaos-*/lockchaos-owner.json"):
        try:
            if json.loads(marker.read_text())["owner_pid"] == pid:
                found.append(marker.parent)
        except (OSError, ValueError, KeyError):
            continue
    return found


def gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def mid_soak(out: Path, *args: str) -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
    """Start a soak and return once its server is up and its history has events in it."""
    proc = start_soak(out, *args)
    ps = psutil.Process(proc.pid)
    assert wait_until(lambda: bool(servers_of(ps)) and any(
        h.stat().st_size > 2000 for h in out.rglob("history.jsonl")), timeout=30), "soak never got going"
    return proc, servers_of(ps)


def assert_clean(pid: int, servers: list[psutil.Process]) -> None:
    assert wait_until(lambda: all(gone(s) for s in servers), timeout=10), "a server outlived the harness"
    assert wait_until(lambda: not dirs_of(pid), timeout=10), f"temp dirs left: {dirs_of(pid)}"


LONG = ("--scenario", "soak", "--duration", "120", "--ttl-ms", "300")


@pytest.mark.parametrize("backend", ["redis", "etcd"])
def test_ctrl_c_mid_soak_stops_servers_and_keeps_a_judgeable_history(backend: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ttl = ("--ttl-ms", "1000") if backend == "etcd" else ()
    proc, servers = mid_soak(out, "--backend", backend, *LONG, *ttl)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert_clean(proc.pid, servers)
    history = next(out.rglob("history.jsonl"))
    assert main(["check", str(history.parent)]) in (0, 1)
    summary = json.loads((history.parent / "summary.json").read_text())
    assert summary["status"] == "interrupted"


def test_sigterm_mid_soak_is_as_orderly_as_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc, servers = mid_soak(out, "--backend", "redis", *LONG)
    proc.terminate()
    assert proc.wait(30) == 143
    assert_clean(proc.pid, servers)


def test_sigkill_mid_soak_leaves_no_server_and_no_temp_dir(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc, servers = mid_soak(out, "--backend", "redis", *LONG)
    proc.kill()
    assert proc.wait(10) == -signal.SIGKILL
    assert_clean(proc.pid, servers)
    # The history stops mid-line at worst; check judges it up to its last complete event.
    assert main(["check", str(out)]) in (0, 1)


def test_exception_midway_ends_with_status_3_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # The helper counts the clients it opened in its own process: worker threads share that count.
    # (Worker processes each count their own: tests/test_process_workers.py covers them.)
    proc = start_soak(out, "--adapter", "tests.kill_helpers:explodes_midway", "--server", "redis",
                      "--scenario", "holder-crash", "--ttl-ms", "300", "--workers-mode", "thread")
    ps = psutil.Process(proc.pid)
    seen: list[psutil.Process] = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        seen += [s for s in servers_of(ps) if s not in seen]
        time.sleep(0.02)
    assert proc.wait(5) == 3
    assert "adapter factory exploded midway" in (tmp_path / "harness.log").read_text()
    assert_clean(proc.pid, seen)


def test_normal_exit_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start_soak(out, "--backend", "redis", "--scenario", "clean-handover", "--ttl-ms", "200")
    ps = psutil.Process(proc.pid)
    seen: list[psutil.Process] = []
    while proc.poll() is None:
        seen += [s for s in servers_of(ps) if s not in seen]
        time.sleep(0.02)
    assert proc.returncode == 0 and seen
    assert_clean(proc.pid, seen)


def test_sigkill_mid_clock_fault_soak_leaves_no_libfaketime_shared_memory(tmp_path: Path) -> None:
    """libfaketime removes its /dev/shm files only at a clean exit; the watchdog removes a killed server's."""
    out = tmp_path / "run"
    proc, servers = mid_soak(out, "--backend", "redis", "--scenario", "clock-jump")
    pids = [s.pid for s in servers]
    assert any(Path(f"/dev/shm/faketime_shm_{pid}").exists() for pid in pids), "redis not under libfaketime"
    proc.kill()
    assert proc.wait(10) == -signal.SIGKILL
    assert_clean(proc.pid, servers)
    left = lambda: [p for pid in pids for p in (Path(f"/dev/shm/faketime_shm_{pid}"),  # noqa: E731
                                                Path(f"/dev/shm/sem.faketime_sem_{pid}")) if p.exists()]
    assert wait_until(lambda: not left(), timeout=15), f"left behind: {left()}"
