"""How fast and how lean is ``lockchaos check``? Events per second and peak RSS, a history and one 4x longer.

    nice -n 5 .venv/bin/python bench/bench_checkers.py [--duration 3600] [--workers 16] [--seed 1]
        [--keep DIR]

Records two fake soaks in virtual time, exactly as
``lockchaos soak --backend fake --virtual-time --scenario soak --duration D --workers W`` does, for
D and 4 x D, then times ``lockchaos check`` on each history in its own process (so each peak RSS and
CPU time is its own, read from ``wait4``), and prints them side by side with the ratios: near-linear
checkers take about 4x the time on the 4x history, and a check that streams the file (``checkers/stream.py``)
far less than 4x the memory. The CPU column is the figure to compare on a loaded
machine (the load average is printed): wall time there measures the other processes too. ``--keep DIR``
a second time reuses the histories it recorded, so revisions can be compared on the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HISTORY = "history.jsonl"


def record(out: Path, duration: int, workers: int, seed: int) -> Path:
    """One virtual-time fake soak; returns its history (one recorded there before is reused)."""
    found = sorted(out.rglob(HISTORY))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "lockchaos.harness", "soak", "--backend", "fake", "--virtual-time",
           "--scenario", "soak", "--duration", str(duration), "--workers", str(workers), "--seed", str(seed),
           "--out", str(out)]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    found = sorted(out.rglob(HISTORY))
    if not found:
        raise SystemExit(f"no history recorded by: {' '.join(cmd)}")
    return found[0]


def time_check(history: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system: what a loaded machine does not inflate) and peak RSS
    (bytes) of ``lockchaos check`` on ``history``, in a process of its own."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lockchaos.harness", "check", str(history.parent)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # 1: the checkers found something, still a timed check
        raise SystemExit(f"lockchaos check {history.parent} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=3600, help="simulated seconds of the shorter history")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="record into DIR and keep it, or reuse what an earlier "
                    "--keep DIR recorded (default: a temporary directory)")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-checkers-"))
    try:
        rows = []
        for factor in (1, 4):
            duration = args.duration * factor
            history = record(base / f"d{duration}", duration, args.workers, args.seed)
            with history.open("rb") as f:
                events = sum(1 for _ in f)
            wall, cpu, rss = time_check(history)
            rows.append((duration, events, wall, cpu, rss))
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"{'history':>22} {'events':>9} {'check s':>8} {'events/s':>9} {'cpu s':>6} {'events/cpu s':>12} "
              f"{'peak RSS':>9}")
        for duration, events, wall, cpu, rss in rows:
            print(f"{f'{duration} s x {args.workers} workers':>22} {events:>9,} {wall:>8.2f} "
                  f"{events / wall:>9,.0f} {cpu:>6.2f} {events / cpu:>12,.0f} {rss / 2**20:>6.0f} MiB")
        (_, e1, w1, c1, r1), (_, e4, w4, c4, r4) = rows
        print(f"4x history: {e4 / e1:.2f}x the events, {w4 / w1:.2f}x the time ({c4 / c1:.2f}x the CPU), "
              f"{r4 / r1:.2f}x the peak RSS")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
