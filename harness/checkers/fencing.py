"""Fencing: tokens strictly increase per key across acquires, restarts and failovers.

A restart of a server that does not declare durability may lose the lock and restart its token
counter: that is the known hazard of Redis without persistence, reported as known-unsafe. The same
on a server declaring durability is the backend breaking its word.
"""

from __future__ import annotations

from typing import Any

from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import RESTARTS, FaultWindow, Grant, History, extended_end

NAME = "fencing"
TOKEN_REGRESSIONS = "token_regressions"
EXAMPLES = 5
"""Stat: grants whose token was not above an earlier completed grant's (known-unsafe ones included)."""


def check(h: History) -> CheckResult:
    judge = Judge(h)
    for g in h.grants:
        judge.grant(g)
    return judge.finish()


class Judge:
    """Fed every grant in acquire-invoke order (ties in history order), each once its renews and releases
    are all known; keeps per key the highest token granted, and the findings, never the grants."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.restarts = h.server_faults(*RESTARTS)
        self.findings: list[Finding] = []
        self.examples: list[dict[str, Any]] = []
        self.best_by_key: dict[str, tuple[int, int, str, int]] = {}
        self.definite = 0
        self.lost: list[tuple[tuple[int, int, int], Finding]] = []  # sorted as a sweep per fault reports them
        self.fed = 0

    def grant(self, g: Grant) -> None:
        h = self.h
        self.fed += 1
        if g.definite:
            refused = [r.invoke for r in g.renews if r.rec.outcome == "fail"]
            if refused:  # only a grant with a refused renew can have been lost: few (a loss or an expiry)
                candidate = [(g, max(refused))]
                if h.caps.fencing_tokens:
                    self.lost += [((0, i, self.fed), f) for i, f in _lost_on_restart(h, candidate)]
                    self.lost += [((1, i, self.fed), f) for i, f in _lost_on_promotion(h, candidate)]
                else:
                    self.lost += [((0, i, self.fed), f) for i, f in _lost_on_restart(h, candidate)]
        if not h.caps.fencing_tokens or not g.definite or g.token is None:
            return
        self.definite += 1
        a, best_by_key = g.acquire, self.best_by_key
        best = best_by_key.get(g.key)  # token, complete, owner, line of the key's highest earlier grant
        if best is not None and best[1] < a.invoke and g.token <= best[0]:
            restarted = [f for f in self.restarts if best[1] <= f.end and f.start <= a.complete]
            amnesia = bool(restarted) and not h.caps.durable
            promoted = not amnesia and h.lost_in_failover(a.complete, best[1])
            known = amnesia or promoted
            self.findings.append(Finding(
                NAME, "token-regression", "known-unsafe" if known else "violation",
                f"{g.owner} was granted token {g.token} after {best[2]} had been granted {best[0]}"
                + (": the non-durable server restarted and forgot its token counter" if amnesia else "")
                + (": counter lost on promotion (asynchronous replication)" if promoted else ""),
                a.complete, (best[2], g.owner), (best[0], g.token), (best[3], a.line)))
            if len(self.examples) < EXAMPLES:
                self.examples.append({"kind": "token-regression", "client": g.client, "token": g.token,
                                      "previous_max": best[0], "at_ns": a.complete})
            if known:
                best_by_key[g.key] = (g.token, a.complete, g.owner, a.line)  # judge what follows in the new era
                return
        if best is None or g.token > best[0]:
            best_by_key[g.key] = (g.token, a.complete, g.owner, a.line)

    def finish(self) -> CheckResult:
        h = self.h
        self.lost.sort(key=lambda found: found[0])
        lost = [f for _, f in self.lost]
        if not h.caps.fencing_tokens:
            # No token to judge: a made-up one would only produce false "regressions". What fencing would
            # have prevented shows up as stale writes judged by lease identity (exclusion-register).
            reason = "the lock issues no fencing tokens (capabilities.fencing_tokens=False): token rules do not apply"
            return CheckResult(NAME, tuple(lost), {"skipped": reason, "restarts": len(self.restarts)}, skipped=reason)
        return CheckResult(NAME, tuple(self.findings + lost),
                           {"grants": self.definite, "restarts": len(self.restarts),
                            TOKEN_REGRESSIONS: len(self.findings)}, examples=tuple(self.examples))


def _lost_on_promotion(h: History, candidates: list[tuple[Grant, int]]) -> list[tuple[int, Finding]]:
    """A holder whose renew was refused after a failover, its lease surely not yet expired by the
    reference's rules: the declared hazard of asynchronous replication (a replica that never had the
    lock was promoted). Under linearizable replication the conformance checker flags it instead."""
    out = []
    for i, f in enumerate(h.lossy_failovers):
        end = h.promotion_end(f)
        for g, last_refused in candidates:
            if g.acquire.complete > end or last_refused < f.start:
                continue
            for r in g.renews:
                if r.rec.outcome == "fail" and f.start <= r.invoke and r.complete < extended_end(g, r.invoke):
                    out.append((i, Finding(NAME, "lost-on-promotion", "known-unsafe",
                                       f"{g.owner} lost its lease (token {g.token}) in the failover after "
                                       f"{f.fault} of {f.target}: lock lost on promotion (asynchronous "
                                       "replication, as declared)", r.complete, (g.owner,),
                                       () if g.token is None else (g.token,), (g.acquire.line, r.line))))
                    break
    return out


def _lost_on_restart(h: History, candidates: list[tuple[Grant, int]]) -> list[tuple[int, Finding]]:
    """A holder whose renew failed right after a restart, its lease surely not yet expired."""
    if h.caps.durable:
        return []  # on a durable server the conformance checker flags a refused renew itself
    out = []
    for i, f in enumerate(h.server_faults(*RESTARTS)):
        for g, last_refused in candidates:
            if g.acquire.complete > f.start or last_refused < f.end:
                continue
            for r in g.renews:
                if r.rec.outcome == "fail" and f.end <= r.invoke and r.complete < extended_end(g, f.start):
                    out.append((i, Finding(NAME, "lost-on-restart", "known-unsafe",
                                       f"{g.owner} lost its lease{'' if g.token is None else f' (token {g.token})'}"
                                       + _restart_cause(f), r.complete, (g.owner,),
                                       () if g.token is None else (g.token,), (g.acquire.line, r.line))))
                    break
    return out


def _restart_cause(f: FaultWindow) -> str:
    """What restarted: the lone server, or a cluster's leader restarted empty before any failover
    (its replicas then resync from it: the lock is gone on every member)."""
    if f.target.startswith("leader:"):
        return (f" to {f.fault} of {f.target.removeprefix('leader:')}: the non-durable primary restarted "
                "empty before any failover and its replicas resynced from it")
    return " to a restart of a server without durable state"
