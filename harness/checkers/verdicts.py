"""Judging a recorded run: checkers over its history, written to summary.json and junit-friendly rows.

Shared by the soak driver (at the end of every run) and ``lockchaos check`` (on a recorded run,
also one truncated by a killed harness), so both produce the same verdicts from the same history.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.checkers.model import History
from lockchaos.harness.run.atomicfile import write_atomic
from lockchaos.harness.run.history import HISTORY_FILE, Record

SUMMARY_FILE = "summary.json"
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Judgement:
    results: tuple[CheckResult, ...]
    strict: bool
    truncated: bool

    @property
    def failed(self) -> bool:
        return any(r.verdict(self.strict) == "fail" for r in self.results)

    @property
    def verdict(self) -> str:
        verdicts = {r.verdict(self.strict) for r in self.results}
        return "fail" if "fail" in verdicts else "known-unsafe" if "known-unsafe" in verdicts else "pass"

    def failing(self) -> list[str]:
        return [r.checker for r in self.results if r.verdict(self.strict) == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "strict": self.strict, "truncated_history": self.truncated,
            "checkers": {r.checker: {
                "verdict": r.verdict(self.strict), "violations": len(r.violations),
                "known_unsafe": len(r.known_unsafe), "stats": r.stats,
                "first": [f.to_dict() for f in r.findings[:EXAMPLES]],
            } for r in self.results},
        }


def judge(history: Path | Iterable[Record] | History, *, strict: bool = False) -> Judgement:
    h, results = check_history(history)
    return Judgement(tuple(results), strict, h.truncated)


def history_paths(target: Path) -> list[Path]:
    """A history file, a run directory, or a soak's top directory holding many runs."""
    from lockchaos.backends.base import ConfigurationError

    if target.is_file():
        return [target]
    if (target / HISTORY_FILE).is_file():
        return [target / HISTORY_FILE]
    # Regular files only: a directory or a FIFO by that name is no history (opening a FIFO would block).
    found = sorted(p for p in target.rglob(HISTORY_FILE) if p.is_file()) if target.is_dir() else []
    if not found:
        raise ConfigurationError(f"{target}: no {HISTORY_FILE} here (give a run directory or a history file)")
    return found


def update_summary(run_dir: Path, judgement: Judgement) -> dict[str, Any]:
    """Put the verdicts into the run's summary.json; an unreadable one (a 0-byte file an older version
    left on a full disk) is replaced. A full or read-only directory raises InfrastructureError."""
    path = run_dir / SUMMARY_FILE
    summary: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, too deep
            loaded = json.loads(path.read_bytes())
            summary = loaded if isinstance(loaded, dict) else {}
    summary["checks"] = judgement.to_dict()
    write_atomic(path, json.dumps(summary, indent=2) + "\n")
    return summary
