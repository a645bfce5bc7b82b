"""Checkers: turn a recorded history into findings an engineer can trust.

Each checker reads the same ``History`` and returns a ``CheckResult``; each also takes the calls, writes
and grants it judges one at a time (a ``Judge``), so that a history file is judged in memory that does
not grow with its length (``stream.py``). ``check_history`` runs them all; the run's verdict fails only on
violations of the backend's own declared guarantees, unless ``strict`` also counts known-unsafe
configurations doing what they are known to do.
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
    """Every checker's result on a history, and the history judged.

    A file is judged in two reads that keep only what the last moments of the run can still touch
    (``stream.py``): the ``History`` returned then holds the run's context (meta, faults, end), no call,
    write or grant. Records given in memory are loaded whole, as is a ``History`` already loaded (the soak
    driver's, which the report draws)."""
    if isinstance(source, Path):
        from lockchaos.harness.checkers.stream import check_file

        return check_file(source)
    h = source if isinstance(source, History) else load_history(source)
    return h, [checker(h) for checker in CHECKERS]


__all__ = ["CHECKERS", "CheckResult", "Finding", "History", "check_history", "load_history"]
