"""How fast does virtual time run? Simulated seconds per wall second for a long fake soak.

    .venv/bin/python bench/bench_virtual_time.py [--duration 3600] [--workers 16] [--seed 1]

Runs the `soak` scenario (a seeded random mix of every fault) against the fake in virtual time,
exactly as `lockchaos soak --backend fake --virtual-time --scenario soak` does, and prints the ratio,
the number of history events, and the time the checkers took on that history.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lockchaos.harness.driver import RunOptions, run_scenario
from lockchaos.harness.scenarios import find_scenario
from lockchaos.harness.targets import backend_target
from lockchaos.harness.verdicts import judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockchaos-bench-") as out:
        opts = RunOptions(seed=args.seed, workers=args.workers, duration_s=args.duration, virtual_time=True)
        start = time.perf_counter()
        result = run_scenario(backend_target("fake"), find_scenario("soak"), opts, Path(out))
        wall = time.perf_counter() - start
        history = result.run_dir / "history.jsonl"
        events = sum(1 for _ in history.open())
        check_start = time.perf_counter()
        judge(history)
        check_s = time.perf_counter() - check_start
        assert result.judgement is not None
    run_s = wall - check_s  # the run itself; the driver judged the history once already
    print(f"simulated {result.simulated_s:.0f} s with {args.workers} workers: run {run_s:.2f} s wall "
          f"({result.simulated_s / run_s:.0f} simulated s per wall s), run + checkers {wall:.2f} s "
          f"({result.simulated_s / wall:.0f} per wall s)")
    print(f"history events: {events}; checkers alone {check_s:.2f} s; verdict: {result.judgement.verdict}")


if __name__ == "__main__":
    main()
