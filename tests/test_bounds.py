"""Bounded inputs: an absurd --duration is refused, a long one starts at once and stops on SIGTERM."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest

from lockchaos.harness.cli import main
from lockchaos.harness.scenarios import soak_schedule

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("duration", ["1e9", "2592001", "inf", "nan"])
def test_absurd_duration_is_refused_with_exit_2_and_nothing_created(
        duration: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    assert main(["soak", "--backend", "fake", "--virtual-time", "--scenario", "soak", "--duration", duration,
                 "--out", str(out)]) == 2
    assert time.monotonic() - started < 5
    assert not out.exists()
    err = capsys.readouterr().err
    assert "--duration" in err and err.strip().count("\n") == 0


def test_a_month_long_schedule_is_drawn_lazily() -> None:
    started = time.monotonic()
    steps = soak_schedule(30 * 24 * 3600 * 1000.0, seed=7)  # a month of 1 ms TTLs: about a billion faults
    first = list(itertools.islice(steps, 1000))
    assert time.monotonic() - started < 1
    assert [s.at for s in first] == sorted(s.at for s in first)


def test_the_lazy_schedule_is_the_one_the_seed_always_drew() -> None:
    assert list(soak_schedule(30, seed=3)) == list(soak_schedule(30, seed=3))
    assert [s.fault for s in soak_schedule(30, seed=3)] == [
        s.fault for s in itertools.islice(soak_schedule(10**6, seed=3), len(list(soak_schedule(30, seed=3))))]


RSS_CEILING = 1_500_000_000
"""Bytes: a month-long soak that stopped after seconds needs a fraction of this; before, it needed 18 GB."""


def _long_soak(out: Path) -> tuple[subprocess.Popen[bytes], psutil.Process]:
    argv = [sys.executable, "-m", "lockchaos", "soak", "--backend", "fake", "--virtual-time", "--scenario", "soak",
            "--duration", "2000000", "--seed", "5", "--quiet", "--out", str(out)]
    log = (out.parent / "soak.log").open("wb")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, psutil.Process(proc.pid)


def _stop(proc: subprocess.Popen[bytes], ps: psutil.Process, sig: int) -> tuple[int, float, int]:
    """Signal the harness; (exit status, seconds it took, its peak RSS seen) — SIGKILL after 60 s."""
    peak = 0
    proc.send_signal(sig)
    sent = time.monotonic()
    while proc.poll() is None and time.monotonic() - sent < 60:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    return proc.wait(10), time.monotonic() - sent, peak


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_long_virtual_soak_stops_within_seconds_of_a_signal_with_a_usable_history(
        sig: int, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc, ps = _long_soak(out)
    history = out / "fake" / "soak" / "history.jsonl"
    try:
        deadline = time.monotonic() + 30
        peak = 0
        while time.monotonic() < deadline and not (history.is_file() and history.stat().st_size > 2_000_000):
            peak = max(peak, ps.memory_info().rss)
            time.sleep(0.05)
        assert history.is_file() and history.stat().st_size > 2_000_000, "the soak never got going"
        time.sleep(1.0)  # well into the run: a big history that would take a long while to judge
        status, took, after = _stop(proc, ps, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert status == 128 + sig, (out.parent / "soak.log").read_text()
    assert took < 10, f"took {took:.1f} s to stop"
    assert max(peak, after) < RSS_CEILING
    summary = orjson.loads((history.parent / "summary.json").read_bytes())
    assert summary["status"] == "interrupted"
    assert main(["check", str(history)]) in (0, 1)  # the history is whole up to its last line, and judged


def _big_history(path: Path, cycles: int) -> Path:
    """A valid history of ``cycles`` acquire/release pairs: minutes of checking, written in a second."""
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    ms = 1_000_000
    with path.open("w", encoding="utf-8") as f:
        f.write(orjson.dumps({"type": "note", "kind": "meta", "time_ns": 0,
                              "data": {"ttl_ms": 1000, "capabilities": caps}}).decode() + "\n")
        for i in range(cycles):
            t = i * 10 * ms
            f.write(f'{{"type":"op","client":"w{i % 3}","op":"acquire","key":"k","args":{{"owner":"w{i % 3}",'
                    f'"ttl_ms":1000}},"invoke_ns":{t},"complete_ns":{t + ms},"outcome":"ok","lease":{{"owner":'
                    f'"w{i % 3}","token":{i + 1},"ttl_ms":1000}},"error":null}}\n'
                    f'{{"type":"op","client":"w{i % 3}","op":"release","key":"k","args":{{"owner":"w{i % 3}"}},'
                    f'"invoke_ns":{t + 5 * ms},"complete_ns":{t + 6 * ms},"outcome":"ok","lease":null,"error":null}}\n')
    return path


@pytest.mark.parametrize("command", ["check", "report"])
def test_check_and_report_of_a_long_history_stop_within_seconds_of_sigterm(command: str, tmp_path: Path) -> None:
    history = _big_history(tmp_path / "history.jsonl", 150_000)
    proc = subprocess.Popen([sys.executable, "-m", "lockchaos", command, str(history)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        time.sleep(2.0)  # python started, the history is being read or judged
        assert proc.poll() is None, "finished before the signal: make the history longer"
        status, took, _ = _stop(proc, psutil.Process(proc.pid), signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert status == 143
    assert took < 5, f"took {took:.1f} s to stop"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
