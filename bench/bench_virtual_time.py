"""How fast does virtual time run? Simulated seconds per wall second, by phase, for a long fake soak.

    nice -n 5 .venv/bin/python bench/bench_virtual_time.py [--duration 3600] [--workers 16] [--seed 1]

Runs the `soak` scenario (a seeded random mix of every fault) against the fake in virtual time,
exactly as `lockchaos soak --backend fake --virtual-time --scenario soak` does, and splits the one
run's wall time into its phases, each timed where the driver calls it:

- simulation: from the start until the driver first reads the history back (setting up, the
  simulated workers and nemesis, quiescing, writing the history);
- checking: reading the history back, the observations and the checkers;
- report: writing the summary and the HTML/text report.

It prints simulated seconds per wall second for the simulation alone, with the checkers, and with
the report, the number of history events and the checkers' events per second.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lockchaos.harness.run import driver
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario

CHECKING = ("read_history", "load_history", "observe", "judge")
"""Names the driver calls after the simulation, to check the history; absent ones are skipped."""
REPORTING = ("_write_summary", "write_report")


class PhaseClock:
    """Wraps the driver's post-simulation calls to time them; the simulation ends at the first."""

    def __init__(self) -> None:
        self.first_call: float | None = None
        self.spent = {"checking": 0.0, "report": 0.0}

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            if self.first_call is None and phase == "checking":
                self.first_call = start
            result = fn(*args, **kwargs)
            if isinstance(result, Iterable) and not isinstance(result, list | tuple | dict | str | bytes):
                result = list(result)  # a lazy reader: do its work inside the timing
            self.spent[phase] += time.perf_counter() - start
            return result

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    clock = PhaseClock()
    originals: dict[str, Callable[..., Any]] = {}
    for phase, names in (("checking", CHECKING), ("report", REPORTING)):
        for name in names:
            if callable(getattr(driver, name, None)):
                originals[name] = getattr(driver, name)
                setattr(driver, name, clock.wrap(phase, originals[name]))
    try:
        with tempfile.TemporaryDirectory(prefix="lockchaos-bench-") as out:
            opts = RunOptions(seed=args.seed, workers=args.workers, duration_s=args.duration, virtual_time=True)
            start = time.perf_counter()
            result = run_scenario(backend_target("fake"), find_scenario("soak"), opts, Path(out))
            total = time.perf_counter() - start
            events = sum(1 for _ in (result.run_dir / "history.jsonl").open())
    finally:
        for name, fn in originals.items():
            setattr(driver, name, fn)
    assert result.judgement is not None
    if clock.first_call is None:
        raise SystemExit("the driver never read its history back: cannot tell the simulation from the checking")
    sim = clock.first_call - start
    check, report = clock.spent["checking"], clock.spent["report"]
    other = total - sim - check - report  # teardown and anything unwrapped
    simulated = result.simulated_s
    print(f"simulated {simulated:.0f} s, {args.workers} workers, seed {args.seed}: {events} history events, "
          f"verdict {result.judgement.verdict}")
    print(f"{'phase':<12}{'wall s':>9}{'cumulative s':>14}{'sim s per wall s':>18}")
    cumulative = 0.0
    for label, spent in (("simulation", sim), ("+ checking", check), ("+ report", report), ("+ teardown", other)):
        cumulative += spent
        print(f"{label:<12}{spent:>9.2f}{cumulative:>14.2f}{simulated / cumulative:>18.0f}")
    print(f"checking alone: {events / check:,.0f} events/s (reading the history, observations, checkers)")


if __name__ == "__main__":
    main()
