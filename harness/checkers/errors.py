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

import heapq
from collections import Counter

from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import History
from lockchaos.harness.run.history import OpRecord

NAME = "error-handling"
KEEP = 20


def unmapped(error: str | None) -> bool:
    """The worker marks an exception it did not expect with this prefix (see ``Worker._call``)."""
    return error is not None and error.startswith("unexpected ")


class Judge:
    """Counts every unmapped exception and keeps, per call and type, the first few in invoke order: calls
    may be fed in any order (a file is read in completion order), the findings are those a sweep in
    invoke order keeps."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.by_type: Counter[str] = Counter()
        self._first: dict[str, list[tuple[int, int, Finding]]] = {}  # per type: its first few, a max-heap

    def op(self, line: int, rec: OpRecord) -> None:
        if rec.error is None or rec.client == "observer" or not unmapped(rec.error):
            return
        name = rec.error_type or str(rec.error).removeprefix("unexpected ").split(":")[0]
        kind = f"{rec.op}:{name}"
        self.by_type[kind] += 1
        first = self._first.setdefault(kind, [])
        order = (-rec.invoke_ns, -line)
        if len(first) == 3 and order <= (first[0][0], first[0][1]):
            return  # later than the type's first three: counted, never shown
        finding = Finding(
            NAME, "unmapped-exception", "violation",
            f"{rec.op} raised {rec.error} instead of returning or raising BackendUnavailable: the outcome is "
            "unknown to the caller (judged as indeterminate by the safety checks)",
            rec.complete_ns, (rec.client,), (), (line,))
        if len(first) == 3:
            heapq.heapreplace(first, (*order, finding))
        else:
            heapq.heappush(first, (*order, finding))

    def finish(self) -> CheckResult:
        h, by_type = self.h, self.by_type
        kept = sorted((-neg_invoke, -neg_line, f) for first in self._first.values()
                      for neg_invoke, neg_line, f in first)
        findings = [f for _, _, f in kept[:KEEP]]
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


def check(h: History) -> CheckResult:
    judge = Judge(h)
    for op in h.ops:
        judge.op(op.line, op.rec)
    return judge.finish()
