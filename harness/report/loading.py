"""A recorded run as the report needs it: summary, loaded history, verdicts and every finding.

Verdicts come from ``summary.json`` when the run was judged (they may be strict); a history that was
never judged is judged here. The summary keeps only the first findings per checker, so when it has
fewer than the counts it reports, the checkers are re-run on the already loaded history to list all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.checkers.model import History, load_history
from lockchaos.harness.checkers.verdicts import SUMMARY_FILE, Judgement

MAX_FINDINGS_SHOWN = 300
"""Findings marked on the timeline and listed in the table; violations are kept first."""


@dataclass(frozen=True, slots=True)
class FindingRow:
    number: int  # 1-based: the anchor ``finding-N``
    checker: str
    kind: str
    severity: str  # violation | known-unsafe
    message: str
    time_s: float
    clients: tuple[str, ...]
    tokens: tuple[int, ...]
    lines: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CheckerRow:
    name: str
    verdict: str
    violations: int
    known_unsafe: int
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoadedRun:
    history_path: Path
    summary: dict[str, Any]
    history: History
    verdict: str
    strict: bool
    checkers: tuple[CheckerRow, ...]
    findings: tuple[FindingRow, ...]  # the shown ones, by time, numbered
    findings_total: int


def read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` as a dict; ``{}`` when absent, a ConfigurationError when unreadable."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigurationError(f"{path}: not a readable summary: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: not a readable summary: not a JSON object")
    return data


def summary_beside(history_path: Path) -> dict[str, Any]:
    """The summary that belongs to a history: only a run directory's own ``history.jsonl`` has one."""
    if history_path.name != "history.jsonl":
        return {}
    return read_summary(history_path.parent / SUMMARY_FILE)


def load_history_or_explain(path: Path) -> History:
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such history file")
    try:
        return load_history(path)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{path}: not a readable lockchaos history: {exc}") from None


def load_run(history_path: Path, summary: dict[str, Any],
             judged: tuple[History, Judgement] | None = None) -> LoadedRun:
    """The run as the report shows it; ``judged`` is the history already loaded and judged (by the
    driver, in the same process), else the history is loaded here."""
    h = load_history_or_explain(history_path) if judged is None else judged[0]
    checks = summary.get("checks")
    results: tuple[CheckResult, ...] | None = None if judged is None else judged[1].results
    if not well_formed_checks(checks):
        # What ``verdicts.judge`` does, on the history already loaded instead of loading it again.
        results = tuple(check_history(h)[1]) if results is None else results
        checks = Judgement(results, strict=False, truncated=h.truncated).to_dict()
    assert isinstance(checks, dict)
    rows = tuple(CheckerRow(name, str(c["verdict"]), int(c["violations"]), int(c["known_unsafe"]),
                            dict(c.get("stats") or {}))
                 for name, c in checks["checkers"].items())
    if results is not None:
        raw = [f.to_dict() for r in results for f in r.findings]
    elif all(len(c.get("first") or []) >= int(c["violations"]) + int(c["known_unsafe"])
             for c in checks["checkers"].values()):
        raw = [f for c in checks["checkers"].values() for f in (c.get("first") or [])]
    else:  # the summary lists only the first few: the checkers list them all
        raw = [f.to_dict() for r in check_history(h)[1] for f in r.findings]
    shown, total = _numbered(raw)
    return LoadedRun(history_path, summary, h, str(checks["verdict"]), bool(checks.get("strict", False)),
                     rows, shown, total)


def well_formed_checks(checks: object) -> bool:
    """Whether a summary's ``checks`` has the layout ``Judgement.to_dict`` writes, every field of its type.
    Only then are the recorded verdicts shown; otherwise the history is judged again, so that a summary
    edited by hand (or by anything else) never raises inside the report."""
    if not isinstance(checks, dict) or not isinstance(checks.get("checkers"), dict) \
            or type(checks.get("verdict")) is not str:
        return False
    return all(isinstance(c, dict) and type(c.get("verdict")) is str and type(c.get("violations")) is int
               and type(c.get("known_unsafe")) is int and isinstance(c.get("stats") or {}, dict)
               and isinstance(c.get("first") or [], list) and all(map(_well_formed_finding, c.get("first") or []))
               for c in checks["checkers"].values())


def _well_formed_finding(f: object) -> bool:
    return (isinstance(f, dict) and type(f.get("time_s", 0.0)) in (int, float)
            and all(isinstance(f.get(name, []), list) for name in ("clients", "tokens", "lines"))
            and all(type(n) is int for name in ("tokens", "lines") for n in f.get(name, [])))


def _numbered(raw: list[dict[str, Any]]) -> tuple[tuple[FindingRow, ...], int]:
    violations = [f for f in raw if f.get("severity") == "violation"]
    others = [f for f in raw if f.get("severity") != "violation"]
    kept = (violations + others)[:MAX_FINDINGS_SHOWN]
    kept.sort(key=lambda f: (float(f.get("time_s", 0.0)), str(f.get("checker", ""))))
    rows = tuple(FindingRow(i, str(f.get("checker", "")), str(f.get("kind", "")),
                            "violation" if f.get("severity") == "violation" else "known-unsafe",
                            str(f.get("message", "")), float(f.get("time_s", 0.0)),
                            tuple(str(c) for c in f.get("clients", ())), tuple(int(t) for t in f.get("tokens", ())),
                            tuple(int(n) for n in f.get("lines", ())))
                 for i, f in enumerate(kept, start=1))
    return rows, len(raw)
