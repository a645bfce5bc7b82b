"""What do worker processes cost? The same scenario with process workers and with thread workers.

    .venv/bin/python bench/bench_workers.py [--backend redis] [--scenario contention] [--ttl-ms 300]
                                            [--duration 6] [--seed 1]

Runs the scenario once per mode against a fresh server (as ``lockchaos soak --workers-mode
process|thread`` does) and prints, per mode: client operations per second of run time, the latency
of each operation kind (p50 / p99 from the history's invoke/complete times, which is what the
checkers' timing uncertainty is made of), register writes per second, and the start-up cost (wall
time before the workers ran: spawning and importing one interpreter per worker).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import NoteRecord, OpRecord, WriteRecord, read_history
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def measure(backend: str, scenario: str, mode: str, ttl_ms: int, duration_s: float, seed: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lockchaos-bench-") as out:
        opts = RunOptions(seed=seed, ttl_ms=ttl_ms, duration_s=duration_s, workers_mode=mode)  # type: ignore[arg-type]
        start = time.perf_counter()
        result = run_scenario(backend_target(backend), find_scenario(scenario), opts, Path(out))
        wall = time.perf_counter() - start
        records = list(read_history(result.run_dir / "history.jsonl"))
    ops = [r for r in records if isinstance(r, OpRecord) and r.client != "observer"]
    writes = [r for r in records if isinstance(r, WriteRecord)]
    quiesce = next(r.time_ns for r in records if isinstance(r, NoteRecord) and r.kind == "quiesce")
    first = min(r.invoke_ns for r in ops)
    span_s = (quiesce - first) / 1e9
    lat = {op: [(r.complete_ns - r.invoke_ns) / 1e6 for r in ops if r.op == op]
           for op in ("acquire", "renew", "release")}
    assert result.judgement is not None
    print(f"{mode:8} {backend}/{scenario}: {len(ops) / span_s:7.0f} ops/s, {len(writes) / span_s:6.0f} writes/s; "
          + "; ".join(f"{op} p50 {statistics.median(v):.2f} ms p99 {_pct(v, 0.99):.2f} ms (n={len(v)})"
                      for op, v in lat.items() if v)
          + f"; start-up {first / 1e9:.2f} s, wall {wall:.1f} s; verdict {result.judgement.verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="redis")
    parser.add_argument("--scenario", default="contention")
    parser.add_argument("--ttl-ms", type=int, default=300)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for mode in ("thread", "process"):
        measure(args.backend, args.scenario, mode, args.ttl_ms, args.duration, args.seed)


if __name__ == "__main__":
    main()
