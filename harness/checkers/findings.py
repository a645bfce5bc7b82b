"""What a checker reports: findings with their evidence, and one verdict per checker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["violation", "known-unsafe"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that should not have happened, with the history lines that prove it.

    ``known-unsafe`` marks a configuration doing what it is known to do (Redis without persistence
    losing a lock on restart, a paused holder writing without fencing): reported, but not the
    backend breaking its own declared guarantees.
    """

    checker: str
    kind: str
    severity: Severity
    message: str
    time_ns: int
    clients: tuple[str, ...] = ()
    tokens: tuple[int, ...] = ()
    lines: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"checker": self.checker, "kind": self.kind, "severity": self.severity,
                "message": self.message, "time_s": round(self.time_ns / 1e9, 6),
                "clients": list(self.clients), "tokens": list(self.tokens), "lines": list(self.lines)}


@dataclass(frozen=True, slots=True)
class CheckResult:
    checker: str
    findings: tuple[Finding, ...]
    stats: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""
    """Why this checker does not apply to the run (a fencing check of a lock with no tokens), if so."""
    examples: tuple[dict[str, Any], ...] = ()
    """The first few events behind a counted stat (stale writes, token regressions), findings or not:
    the run summary's observations show them; verdicts do not depend on them."""

    @property
    def violations(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "violation")

    @property
    def known_unsafe(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "known-unsafe")

    def verdict(self, strict: bool = False) -> Literal["pass", "fail", "known-unsafe", "skipped"]:
        if self.violations or (strict and self.known_unsafe):
            return "fail"
        if self.known_unsafe:
            return "known-unsafe"
        return "skipped" if self.skipped else "pass"
