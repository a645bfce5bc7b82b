"""Slow calls: a lock call that blocks far beyond the client's own timeout (hidden retries).

A lock client promises its caller an answer within its timeout: ``BackendUnavailable`` when the
server does not reply. A library that silently retries (redis-py's default of ten retries turned a
lost release reply into a 14.6 s block under a 1 s TTL) breaks that promise, and a caller who sized
its deadlines by the timeout works on without a lock. A call is flagged when it took more than
``FACTOR`` times the client's declared timeout (``timeout_ms``, recorded per client) plus slack,
once the time its own process was frozen or dead (holder pause, holder crash) is taken out; a
client that declares no timeout is judged against the TTL instead, since a lock call that outlasts
several leases is of no use to anyone.
"""

from __future__ import annotations

from lockchaos.backends.clock import NS_PER_MS
from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import FaultIndex, FaultWindow, History
from lockchaos.harness.faults.registry import named
from lockchaos.harness.run.history import OpRecord

NAME = "slow-call"
FACTOR = 3
SLACK_NS = 500 * NS_PER_MS
KEEP = 20
_FROZEN = named(lambda t: t.kills_holder or t.freezes_holder)


class Judge:
    """Each call judged on its own, in history order (the order its findings are kept in)."""

    def __init__(self, h: History) -> None:
        self.h = h
        windows: dict[str, list[FaultWindow]] = {}
        for f in h.faults:
            if f.fault in _FROZEN:
                for target in f.target.split(","):
                    windows.setdefault(target, []).append(f)
        self.frozen = {client: FaultIndex(fs) for client, fs in windows.items()}  # a call meets only a few
        self.findings: list[Finding] = []
        self.slow = 0
        self.longest = 0
        self.undeclared: set[str] = set()
        self.allowed: dict[str, int] = {}  # per client, the longest call it may take

    def op(self, line: int, rec: OpRecord) -> None:
        h = self.h
        client = rec.client
        limit = self.allowed.get(client)
        if limit is None:
            if client == "observer":
                return
            timeout = h.client_timeouts.get(client)
            if not isinstance(timeout, int):
                self.undeclared.add(client)
            reference_ms = timeout if isinstance(timeout, int) else h.ttl_ms
            limit = self.allowed[client] = FACTOR * reference_ms * NS_PER_MS + SLACK_NS
        invoke, complete = rec.invoke_ns, rec.complete_ns
        took = complete - invoke
        stops = self.frozen.get(client)
        if stops is not None:
            took -= sum(max(0, min(f.end, complete) - max(f.start, invoke))
                        for f in stops.overlapping(invoke, complete))
        if took > self.longest:
            self.longest = took
        if took <= limit:
            return
        timeout = h.client_timeouts.get(client)
        self.slow += 1
        if len(self.findings) >= KEEP:
            return
        ref = f"its declared timeout of {timeout} ms" if isinstance(timeout, int) else \
            f"the TTL of {h.ttl_ms} ms (the client declares no timeout_ms)"
        self.findings.append(Finding(
            NAME, "slow-call", "violation",
            f"{rec.op} blocked {took / 1e9:.3f} s ({rec.outcome}), more than {FACTOR}x {ref}: the client "
            "retries or waits where it should give up and report the outcome unknown",
            complete, (rec.client,), (), (line,)))

    def finish(self) -> CheckResult:
        stats: dict[str, object] = {"slow_calls": self.slow, "longest_call_s": round(self.longest / 1e9, 3),
                                    "factor": FACTOR}
        if self.undeclared:
            stats["clients_without_timeout"] = len(self.undeclared)
        return CheckResult(NAME, tuple(self.findings), stats)


def check(h: History) -> CheckResult:
    judge = Judge(h)
    for op in h.ops:
        judge.op(op.line, op.rec)
    return judge.finish()
