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
    restarts = h.server_faults(*RESTARTS)
    if not h.caps.fencing_tokens:
        # No token to judge: a made-up one would only produce false "regressions". What fencing would
        # have prevented shows up as stale writes judged by lease identity (exclusion-register).
        lost = _lost_on_restart(h, _refused_renewals(h))
        reason = "the lock issues no fencing tokens (capabilities.fencing_tokens=False): token rules do not apply"
        return CheckResult(NAME, tuple(lost), {"skipped": reason, "restarts": len(restarts)}, skipped=reason)
    findings: list[Finding] = []
    examples: list[dict[str, Any]] = []
    # The history's grants are in acquire-invoke order; tokens are judged per key.
    definite = [g for g in h.grants if g.definite and g.token is not None]
    best_by_key: dict[str, tuple[int, int, str, int]] = {}
    for g in definite:
        assert g.token is not None
        a = g.acquire
        best = best_by_key.get(g.key)  # token, complete, owner, line of the key's highest earlier grant
        if best is not None and best[1] < a.invoke and g.token <= best[0]:
            restarted = [f for f in restarts if best[1] <= f.end and f.start <= a.complete]
            amnesia = bool(restarted) and not h.caps.durable
            promoted = not amnesia and h.lost_in_failover(a.complete, best[1])
            known = amnesia or promoted
            findings.append(Finding(
                NAME, "token-regression", "known-unsafe" if known else "violation",
                f"{g.owner} was granted token {g.token} after {best[2]} had been granted {best[0]}"
                + (": the non-durable server restarted and forgot its token counter" if amnesia else "")
                + (": counter lost on promotion (asynchronous replication)" if promoted else ""),
                a.complete, (best[2], g.owner), (best[0], g.token), (best[3], a.line)))
            if len(examples) < EXAMPLES:
                examples.append({"kind": "token-regression", "client": g.client, "token": g.token,
                                 "previous_max": best[0], "at_ns": a.complete})
            if known:
                best_by_key[g.key] = (g.token, a.complete, g.owner, a.line)  # judge what follows in the new era
                continue
        if best is None or g.token > best[0]:
            best_by_key[g.key] = (g.token, a.complete, g.owner, a.line)
    candidates = _refused_renewals(h)
    lost = _lost_on_restart(h, candidates) + _lost_on_promotion(h, candidates)
    return CheckResult(NAME, tuple(findings + lost), {"grants": len(definite), "restarts": len(restarts),
                                                      TOKEN_REGRESSIONS: len(findings)}, examples=tuple(examples))


def _refused_renewals(h: History) -> list[tuple[Grant, int]]:
    """The definite grants with a refused renew, in history order, each with its last refused renew's
    invoke: only they can have been lost, and they are few (a refusal follows a loss or an expiry), so
    each fault looks at them alone rather than at every grant."""
    out = []
    for g in h.grants:
        if g.definite:
            refused = [r.invoke for r in g.renews if r.rec.outcome == "fail"]
            if refused:
                out.append((g, max(refused)))
    return out


def _lost_on_promotion(h: History, candidates: list[tuple[Grant, int]]) -> list[Finding]:
    """A holder whose renew was refused after a failover, its lease surely not yet expired by the
    reference's rules: the declared hazard of asynchronous replication (a replica that never had the
    lock was promoted). Under linearizable replication the conformance checker flags it instead."""
    out = []
    for f in h.lossy_failovers:
        end = h.promotion_end(f)
        for g, last_refused in candidates:
            if g.acquire.complete > end or last_refused < f.start:
                continue
            for r in g.renews:
                if r.rec.outcome == "fail" and f.start <= r.invoke and r.complete < extended_end(g, r.invoke):
                    out.append(Finding(NAME, "lost-on-promotion", "known-unsafe",
                                       f"{g.owner} lost its lease (token {g.token}) in the failover after "
                                       f"{f.fault} of {f.target}: lock lost on promotion (asynchronous "
                                       "replication, as declared)", r.complete, (g.owner,),
                                       () if g.token is None else (g.token,), (g.acquire.line, r.line)))
                    break
    return out


def _lost_on_restart(h: History, candidates: list[tuple[Grant, int]]) -> list[Finding]:
    """A holder whose renew failed right after a restart, its lease surely not yet expired."""
    if h.caps.durable:
        return []  # on a durable server the conformance checker flags a refused renew itself
    out = []
    for f in h.server_faults(*RESTARTS):
        for g, last_refused in candidates:
            if g.acquire.complete > f.start or last_refused < f.end:
                continue
            for r in g.renews:
                if r.rec.outcome == "fail" and f.end <= r.invoke and r.complete < extended_end(g, f.start):
                    out.append(Finding(NAME, "lost-on-restart", "known-unsafe",
                                       f"{g.owner} lost its lease{'' if g.token is None else f' (token {g.token})'}"
                                       + _restart_cause(f), r.complete, (g.owner,),
                                       () if g.token is None else (g.token,), (g.acquire.line, r.line)))
                    break
    return out


def _restart_cause(f: FaultWindow) -> str:
    """What restarted: the lone server, or a cluster's leader restarted empty before any failover
    (its replicas then resync from it: the lock is gone on every member)."""
    if f.target.startswith("leader:"):
        return (f" to {f.fault} of {f.target.removeprefix('leader:')}: the non-durable primary restarted "
                "empty before any failover and its replicas resynced from it")
    return " to a restart of a server without durable state"
