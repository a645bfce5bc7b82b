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

NAME = "slow-call"
FACTOR = 3
SLACK_NS = 500 * NS_PER_MS
KEEP = 20
_FROZEN = named(lambda t: t.kills_holder or t.freezes_holder)


def check(h: History) -> CheckResult:
    findings: list[Finding] = []
    windows: dict[str, list[FaultWindow]] = {}
    for f in h.faults:
        if f.fault in _FROZEN:
            for target in f.target.split(","):
                windows.setdefault(target, []).append(f)
    frozen = {client: FaultIndex(fs) for client, fs in windows.items()}  # a call meets only a few of them
    slow = 0
    longest = 0
    undeclared: set[str] = set()
    allowed: dict[str, int] = {}  # per client, the longest call it may take
    for op in h.ops:
        rec = op.rec
        client = rec.client
        limit = allowed.get(client)
        if limit is None:
            if client == "observer":
                continue
            timeout = h.client_timeouts.get(client)
            if not isinstance(timeout, int):
                undeclared.add(client)
            reference_ms = timeout if isinstance(timeout, int) else h.ttl_ms
            limit = allowed[client] = FACTOR * reference_ms * NS_PER_MS + SLACK_NS
        took = op.complete - op.invoke
        stops = frozen.get(client)
        if stops is not None:
            took -= sum(max(0, min(f.end, op.complete) - max(f.start, op.invoke))
                        for f in stops.overlapping(op.invoke, op.complete))
        if took > longest:
            longest = took
        if took <= limit:
            continue
        timeout = h.client_timeouts.get(client)
        slow += 1
        if len(findings) >= KEEP:
            continue
        ref = f"its declared timeout of {timeout} ms" if isinstance(timeout, int) else \
            f"the TTL of {h.ttl_ms} ms (the client declares no timeout_ms)"
        findings.append(Finding(
            NAME, "slow-call", "violation",
            f"{rec.op} blocked {took / 1e9:.3f} s ({rec.outcome}), more than {FACTOR}x {ref}: the client "
            "retries or waits where it should give up and report the outcome unknown",
            op.complete, (rec.client,), (), (op.line,)))
    stats: dict[str, object] = {"slow_calls": slow, "longest_call_s": round(longest / 1e9, 3), "factor": FACTOR}
    if undeclared:
        stats["clients_without_timeout"] = len(undeclared)
    return CheckResult(NAME, tuple(findings), stats)
