"""Checkers: turn a recorded history into findings an engineer can trust.

Each checker reads the same ``History`` and returns a ``CheckResult``; those that look at every call
or write also take them one at a time (a ``Judge``), so that a history file is judged without being
loaded whole (``stream.py``). ``check_history`` runs them all; the run's verdict fails only on
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

    A file is judged in two reads that keep only its grants (``stream.py``): the ``History`` returned
    then holds the grants and the calls behind them, not every call and write. Records given in
    memory are loaded whole, as is a ``History`` already loaded (the soak driver's, which the report draws)."""
    if isinstance(source, Path):
        from lockchaos.harness.checkers.stream import check_file

        return check_file(source)
    h = source if isinstance(source, History) else load_history(source)
    return h, [checker(h) for checker in CHECKERS]


__all__ = ["CHECKERS", "CheckResult", "Finding", "History", "check_history", "load_history"]
