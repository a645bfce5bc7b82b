"""Checkers: turn a recorded history into findings an engineer can trust.

Each checker reads the same loaded ``History`` and returns a ``CheckResult``. ``check_history`` runs
them all; the run's verdict fails only on violations of the backend's own declared guarantees,
unless ``strict`` also counts known-unsafe configurations doing what they are known to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lockchaos.harness.checkers import conformance, errors, exclusion, fencing, liveness, residue, slowcalls
from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import History, load_history
from lockchaos.harness.run.history import Record

CHECKERS = (conformance.check, exclusion.check_grants, exclusion.check_register, fencing.check, liveness.check,
            errors.check, slowcalls.check, residue.check)


def check_history(source: Path | Iterable[Record] | History) -> tuple[History, list[CheckResult]]:
    h = source if isinstance(source, History) else load_history(source)
    return h, [checker(h) for checker in CHECKERS]


__all__ = ["CHECKERS", "CheckResult", "Finding", "History", "check_history", "load_history"]
