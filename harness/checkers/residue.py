"""Residue: what the lock left on its server after the run, read from the ``residue`` note.

The driver looks at the server twice without touching it (``harness/servers/residue.py``): when the workers
stop, and after the quiesce has waited out every lease. Findings:

- **never-expiring-lock** (violation): after the quiesce the lock is still held and the server holds
  a key without a TTL: a lock that never expires (sherlock's SETNX-then-EXPIRE when the EXPIRE
  fails). A key without a TTL while the lock is free is bookkeeping, such as our Redis adapter's
  fencing counter, which must never expire: listed in the stats, not a finding. A lock whose
  ``holder()`` tells nothing cannot be judged this way; its keys without a TTL are reported as
  known-unsafe ("key-without-ttl").
- **stray-key** (known-unsafe): a key whose name does not contain the lock's key, i.e. state the
  lock keeps outside its own keyspace, where another lock or application may collide with it.
- **leaked-lease** (known-unsafe, etcd): leases alive when the workers stopped that hold no key,
  beyond one per indeterminate call (an acquire whose reply was lost may leave its lease behind; a
  correct adapter cannot revoke what it does not know it granted). Known-unsafe, not a violation:
  an etcd lease always has a TTL, so a leaked one holds no lock and expires on its own; the harm is
  load on the server's lessor (every failed acquire of python3-etcd3's ``Lock`` grants one), which
  ``--strict`` turns into a failure.
"""

from __future__ import annotations

from typing import Any

from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import History
from lockchaos.harness.run.history import OpRecord

NAME = "residue"
EXAMPLES = 10


class Judge:
    """What the residue judgement needs of the calls: whether the observer saw the lock held after the
    quiesce (one look per key after a many-key run), and how many calls were indeterminate."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.observer_saw_held = False
        self.indeterminate = 0

    def op(self, line: int, rec: OpRecord) -> None:
        if rec.outcome == "indeterminate":
            self.indeterminate += 1
        elif rec.client == "observer" and rec.op == "holder" and rec.outcome == "ok" and rec.lease is not None:
            self.observer_saw_held = True

    def finish(self) -> CheckResult:
        return _result(self.h, self)


def check(h: History) -> CheckResult:
    calls = Judge(h)
    for op in h.ops:
        calls.op(op.line, op.rec)
    return calls.finish()


def _result(h: History, calls: Judge) -> CheckResult:
    residue: dict[str, Any] | None = h.meta.get("residue")
    if residue is None:
        return CheckResult(NAME, (), {"inspected": False})
    at_stop: dict[str, Any] = residue.get("at_stop") or {}
    at_end: dict[str, Any] = residue.get("at_end") or {}
    time_ns = int(residue.get("time_ns", h.end_ns))
    lock_key = str(h.meta.get("key", ""))
    findings: list[Finding] = []

    no_ttl = sorted(k["key"] for k in at_end.get("keys", []) if k["ttl_ms"] is None)
    held = None if h.caps.holder_info == "none" else calls.observer_saw_held
    if no_ttl and held:
        findings.append(Finding(NAME, "never-expiring-lock", "violation",
                                f"after every holder released or died and every lease was waited out, the "
                                f"lock is still held and {len(no_ttl)} key(s) have no TTL: "
                                f"{', '.join(no_ttl[:EXAMPLES])}", time_ns))
    elif no_ttl and held is None:
        findings.append(Finding(NAME, "key-without-ttl", "known-unsafe",
                                f"{len(no_ttl)} key(s) without a TTL after the run, and this lock's holder() "
                                f"cannot say whether they hold it: {', '.join(no_ttl[:EXAMPLES])}", time_ns))

    names = {k["key"] for snap in (at_stop, at_end) for k in snap.get("keys", [])}
    stray = sorted(n for n in names if lock_key and lock_key not in n)
    if stray:
        findings.append(Finding(NAME, "stray-key", "known-unsafe",
                                f"{len(stray)} key(s) outside the lock's own key {lock_key!r}: "
                                f"{', '.join(stray[:EXAMPLES])}", time_ns))

    leases = at_stop.get("leases")
    orphans = [lease for lease in leases or [] if not lease["keys"]]
    allowance = calls.indeterminate
    if len(orphans) > allowance:
        findings.append(Finding(NAME, "leaked-lease", "known-unsafe",
                                f"{len(orphans)} lease(s) holding no key were still granted when the workers "
                                f"stopped, against {allowance} indeterminate call(s) that could explain one "
                                f"each: the lock grants leases it neither uses nor revokes", time_ns))

    stats: dict[str, Any] = {
        "inspected": True,
        "scope": at_end.get("scope") or at_stop.get("scope"),
        "keys_at_stop": len(at_stop.get("keys", [])),
        "keys_at_end": len(at_end.get("keys", [])),
        "keys_without_ttl": no_ttl[:EXAMPLES],
        "leases_at_stop": None if leases is None else len(leases),
        "orphan_leases_at_stop": None if leases is None else len(orphans),
        "leases_at_end": None if at_end.get("leases") is None else len(at_end["leases"]),
        "errors": [e for e in (at_stop.get("error"), at_end.get("error")) if e],
    }
    return CheckResult(NAME, tuple(findings), stats)
