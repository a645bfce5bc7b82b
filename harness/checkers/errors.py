"""Error handling: exceptions an adapter let through instead of mapping them.

The interface has two ways to fail: ``ValueError`` for bad input (the harness never sends any) and
``BackendUnavailable`` when the outcome is unknown. Anything else (a raw ``ConnectionError``, a gRPC
error, a ``ValueError`` for valid input, a ``PermissionError`` for "not yours") leaves the caller
unable to tell whether the call took effect. The history keeps such a call as *indeterminate*, so the
safety checks allow both outcomes; this checker reports the adapter's error mapping itself, apart
from lock-semantics findings, as a violation of the interface: a user's code written against the
interface would crash or mis-handle it.
"""

from __future__ import annotations

from collections import Counter

from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import History

NAME = "error-handling"
KEEP = 20


def unmapped(error: str | None) -> bool:
    """The worker marks an exception it did not expect with this prefix (see ``Worker._call``)."""
    return error is not None and error.startswith("unexpected ")


def check(h: History) -> CheckResult:
    findings: list[Finding] = []
    by_type: Counter[str] = Counter()
    for op in h.ops_by_invoke:
        rec = op.rec
        if rec.error is None or rec.client == "observer" or not unmapped(rec.error):
            continue
        name = rec.error_type or str(rec.error).removeprefix("unexpected ").split(":")[0]
        by_type[f"{rec.op}:{name}"] += 1
        if by_type[f"{rec.op}:{name}"] > 3 or len(findings) >= KEEP:
            continue  # the first few per call and type prove the point; the stats count them all
        findings.append(Finding(
            NAME, "unmapped-exception", "violation",
            f"{rec.op} raised {rec.error} instead of returning or raising BackendUnavailable: the outcome is "
            "unknown to the caller (judged as indeterminate by the safety checks)",
            op.complete, (rec.client,), (), (op.line,)))
    for line, note in h.open_errors:
        name = str(note.data.get("error_type") or "?")
        by_type[f"open:{name}"] += 1
        if by_type[f"open:{name}"] <= 3 and len(findings) < KEEP:
            client = str(note.data.get("client", "?"))
            findings.append(Finding(
                NAME, "unmapped-exception", "violation",
                f"opening a client raised {note.data.get('error')} instead of BackendUnavailable: a caller "
                "cannot tell a server that is down from a bug", note.time_ns, (client,), (), (line,)))
    return CheckResult(NAME, tuple(findings), {"unmapped": sum(by_type.values()),
                                                **({"by_type": dict(sorted(by_type.items()))} if by_type else {})})
