"""Soak endurance: memory and file descriptors of the harness over a long soak must stay flat.

    .venv/bin/python bench/bench_endurance.py [--minutes 10] [--workers 8] [--backends redis,etcd]

Runs the `soak` scenario (a random fault every few TTLs) against each backend at once, in this
process, and samples the process's RSS, open file descriptors and threads every few seconds. Prints
the series and, per quantity, the change between the first and the last third of the run: a leak
shows as growth there, noise as a few percent either way.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario

TTL_MS = {"redis": 500, "etcd": 1000, "fake": 500}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--backends", default="redis,etcd")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args()
    me = psutil.Process()
    samples: list[tuple[float, float, int, int]] = []
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="lockchaos-endurance-") as out:

        def soak(backend: str) -> None:
            opts = RunOptions(seed=7, ttl_ms=TTL_MS[backend], workers=args.workers, duration_s=args.minutes * 60)
            r = run_scenario(backend_target(backend), find_scenario("soak"), opts, Path(out))
            obs = r.observations
            faults = sum(obs.faults.values()) if obs else 0
            verdict = r.judgement.verdict if r.judgement else r.status
            results[backend] = f"{verdict}, {faults} faults, {obs.acquisitions if obs else 0} acquisitions"

        threads = [threading.Thread(target=soak, args=(b,), daemon=True) for b in args.backends.split(",")]
        start = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            samples.append((time.monotonic() - start, me.memory_info().rss / 2**20, me.num_fds(), me.num_threads()))
            time.sleep(args.every)
        for t in threads:
            t.join()
    print(f"{'t (s)':>8} {'RSS (MiB)':>10} {'fds':>5} {'threads':>8}")
    for t_s, rss, fds, nthreads in samples:
        print(f"{t_s:8.0f} {rss:10.1f} {fds:5d} {nthreads:8d}")
    third = max(1, len(samples) // 3)
    # The first third includes start-up and warm-up; compare the middle third with the last one.
    mid, last = samples[third:2 * third] or samples[:third], samples[-third:]
    for name, idx in (("RSS MiB", 1), ("fds", 2), ("threads", 3)):
        a = statistics.mean(s[idx] for s in mid)
        b = statistics.mean(s[idx] for s in last)
        print(f"{name:8}: middle third {a:8.1f}, last third {b:8.1f} ({(b - a) / a * 100:+.1f}%)")
    for backend, summary in results.items():
        print(f"{backend}: {summary}")


if __name__ == "__main__":
    main()
