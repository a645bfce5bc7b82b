"""Plain facts about a run, for its summary: counts, stale writes, token regressions.

These are observations, not verdicts: the checkers decide what is a violation given the backend's
declared capabilities; this module only says what happened, so a person can read a run at a glance.
Counts are tallied as the driver records the history (nothing reads it back for them); stale writes
and token regressions are the checkers' own stats, never computed a second time here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lockchaos.harness.checkers import exclusion, fencing
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.faults.registry import named
from lockchaos.harness.run.history import FaultRecord, OpRecord, Record, WriteRecord

EXAMPLES = 5
RESTARTS = named(lambda t: t.restarts_server)
"""Faults that restart the server (and, without durability, its token counter): from the fault registry."""


@dataclass(frozen=True, slots=True)
class Observations:
    ops: dict[str, int]
    faults: dict[str, int]
    acquisitions: int
    writes_accepted: int
    writes_rejected: int
    stale_writes: int
    """Writes carrying a token older than one already granted by the time of the write; for a lock
    without tokens, writes by a client whose lease had surely ended or been superseded by then."""
    stale_writes_accepted: int
    token_regressions: int
    """Grants whose token is not above every earlier grant's (a counter lost on restart)."""
    renew_failures_after_restart: int
    final_holder: dict[str, Any] | None
    examples: list[dict[str, Any]] = field(default_factory=list)


class Tally:
    """The counts, fed every record as it is recorded (from any worker thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._acquisitions = self._accepted = self._rejected = self._renew_after = 0
        self._restart_end: int | None = None
        self._final: dict[str, Any] | None = None

    def add(self, rec: Record) -> None:
        with self._lock:
            if isinstance(rec, OpRecord):
                self._ops[f"{rec.op}:{rec.outcome}"] += 1
                if rec.client == "observer":  # many keys: the first still held, if any
                    self._final = self._final or rec.lease
                elif rec.op == "acquire" and rec.outcome == "ok" and rec.lease is not None:
                    self._acquisitions += 1
                elif rec.op == "renew" and rec.outcome == "fail" and self._restart_end is not None \
                        and rec.invoke_ns >= self._restart_end:
                    self._renew_after += 1
            elif isinstance(rec, WriteRecord):
                self._accepted += rec.accepted
                self._rejected += not rec.accepted
            elif isinstance(rec, FaultRecord):
                if rec.phase == "start":
                    self._faults[rec.fault] += 1
                elif rec.fault in RESTARTS:
                    self._restart_end = rec.time_ns

    def observations(self, results: Iterable[CheckResult]) -> Observations:
        """The counts with the checkers' stale writes and token regressions, and their first examples."""
        stats: dict[str, dict[str, Any]] = {}
        examples: list[dict[str, Any]] = []
        for r in results:
            stats[r.checker] = r.stats
            examples += r.examples
        examples = sorted(examples, key=lambda e: int(e["at_ns"]))[:EXAMPLES]  # the run's first, whoever saw them
        register, tokens = stats.get(exclusion.NAME_REGISTER, {}), stats.get(fencing.NAME, {})
        with self._lock:
            return Observations(
                dict(sorted(self._ops.items())), dict(sorted(self._faults.items())), self._acquisitions,
                self._accepted, self._rejected, int(register.get(exclusion.STALE_WRITES, 0)),
                int(register.get(exclusion.STALE_WRITES_ACCEPTED, 0)),
                int(tokens.get(fencing.TOKEN_REGRESSIONS, 0)), self._renew_after, self._final, examples)


def observe(records: Iterable[Record], results: Iterable[CheckResult]) -> Observations:
    """Observations of a recorded history, judged by ``results``."""
    tally = Tally()
    for rec in records:
        tally.add(rec)
    return tally.observations(results)
