"""Mutual exclusion, judged twice: as the lock service granted it, and as the guarded register saw it.

By grants: no acquire may succeed while another owner's grant was surely in force for the whole
call. By the register: no write may be accepted from a token older than one already accepted
(fencing on), and two believed holders must not interleave their writes; with fencing off, an
interleaving by a stale holder is what the scenario demonstrates (known-unsafe), not a lock failure.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from lockchaos.harness.checkers.findings import CheckResult, Finding, Severity
from lockchaos.harness.checkers.model import RESTARTS, Grant, History, surely_held_throughout
from lockchaos.harness.run.history import WriteRecord

NAME_GRANTS = "exclusion-grants"
NAME_REGISTER = "exclusion-register"
STALE_WRITES = "stale_writes"
"""Stat: writes with a token below one already granted by then (tokenless: by a superseded lease)."""
STALE_WRITES_ACCEPTED = "stale_writes_accepted"
EXAMPLES = 5


def check_grants(h: History) -> CheckResult:
    judge = GrantsJudge(h, exclusive_owners(h.grants))
    for g in h.grants:
        judge.grant(g)
    return judge.finish()


class GrantsJudge:
    """Fed every grant in acquire-invoke order (ties in history order), each once its renews and releases
    are all known, with the owner ids one client alone used (``exclusive_owners``).

    Swept in invoke order: a grant over before one acquire's invoke is over before every later one's,
    so only the possibly-live earlier grants on the same key are kept, in their order, and compared
    latest first. A key's list is rebuilt only once its earliest latest end has passed: what is kept
    is what may still be in force, never the grants behind it."""

    def __init__(self, h: History, exclusive: set[str]) -> None:
        self.h = h
        self.exclusive = exclusive
        self.findings: list[Finding] = []
        self.definite = 0
        self.live_by_key: dict[str, list[Grant]] = {}
        self.min_end: dict[str, int] = {}  # per key, the earliest latest end among its live grants

    def grant(self, g2: Grant) -> None:
        if not g2.definite:
            return
        self.definite += 1
        h, findings, live_by_key, min_end = self.h, self.findings, self.live_by_key, self.min_end
        a, key = g2.acquire, g2.key
        live = live_by_key.setdefault(key, [])
        if key in min_end and min_end[key] < a.invoke:
            live = live_by_key[key] = [g for g in live if g.latest_end >= a.invoke]
            if live:
                min_end[key] = min(g.latest_end for g in live)
            else:
                del min_end[key]
        for g1 in reversed(live):
            if g1.owner == g2.owner and g1.token is not None and g1.token == g2.token:
                continue  # one lease seen twice
            if surely_held_throughout(h, g1, a.invoke, a.complete):
                findings.append(Finding(
                    NAME_GRANTS, "double-grant", "violation",
                    f"{g2.owner} was granted{_tok(g2.token)} while {g1.owner}'s lease{_tok(g1.token)} was "
                    "surely in force for the whole acquire",
                    a.complete, (g1.owner, g2.owner), tuple(t for t in (g1.token, g2.token) if t is not None),
                    (g1.acquire.line, a.line)))
                break
            if surely_held_throughout(h, g1, a.invoke, a.complete, lossy_failover=False):
                # Held by the reference's rules, lost only through an asynchronous replica's promotion.
                findings.append(Finding(
                    NAME_GRANTS, "double-grant", "known-unsafe",
                    f"{g2.owner} was granted token {g2.token} while {g1.owner}'s lease (token {g1.token}) was "
                    "still in force: lock lost on promotion (asynchronous replication, as declared)",
                    a.complete, (g1.owner, g2.owner), tuple(t for t in (g1.token, g2.token) if t is not None),
                    (g1.acquire.line, a.line)))
                break
        else:
            _by_hindsight(h, g2, live, self.exclusive, findings)
        live.append(g2)
        if key not in min_end or g2.latest_end < min_end[key]:
            min_end[key] = g2.latest_end

    def finish(self) -> CheckResult:
        return CheckResult(NAME_GRANTS, tuple(self.findings), {"grants": self.definite})


def exclusive_owners(grants: Iterable[Grant]) -> set[str]:
    """Owner ids that one client alone used: only their renews vouch for their own grant's lease."""
    return exclusive_of((g.owner, g.client) for g in grants)


def exclusive_of(pairs: Iterable[tuple[str, str]]) -> set[str]:
    """The owners among (owner, client) pairs that one client alone used."""
    clients: dict[str, str | None] = {}
    for owner, client in pairs:
        if clients.setdefault(owner, client) != client:
            clients[owner] = None
    return {owner for owner, only in clients.items() if only is not None}


def _by_hindsight(h: History, g2: Grant, live: list[Grant], exclusive: set[str], findings: list[Finding]) -> None:
    """A grant made while another owner's lease was in force, as a renew of that lease that succeeded
    only later proves (it completed after this acquire: the rule above judges by what had completed
    by then). What a client that reports a renew it never made, or extends by a second round trip
    whoever holds the key by then, leaves behind."""
    a = g2.acquire
    for g1 in reversed(live):
        if g1.owner == g2.owner or g1.owner not in exclusive:
            continue
        if surely_held_throughout(h, g1, a.invoke, a.complete, hindsight=True):
            renew = max((r for r in g1.renews if r.rec.outcome == "ok"), key=lambda r: r.invoke)
            findings.append(Finding(
                NAME_GRANTS, "double-grant", "violation",
                f"{g2.owner} was granted{_tok(g2.token)} while {g1.owner}'s lease{_tok(g1.token)} was in force "
                f"for the whole acquire, as its renew sent at {renew.invoke / 1e9:.3f} s and answered ok at "
                f"{renew.complete / 1e9:.3f} s proves (a renew succeeds only on a lease still in force)",
                a.complete, (g1.owner, g2.owner), tuple(t for t in (g1.token, g2.token) if t is not None),
                (g1.acquire.line, renew.line, a.line)))
            return


def _tok(token: int | None) -> str:
    return "" if token is None else f" (token {token})"


class RegisterJudge:
    """The register's writes, fed in history order, judged three ways at once: by token order, by the
    tokens granted by then, and (tokenless) by lease identity. Only per-key and per-token state is
    kept, never the writes. Every grant completed by a write's time is fed (``grant``, in acquire-invoke
    order) before the write is."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.findings: list[Finding] = []  # by token order, the first ``keep`` per kind
        self._per_kind: dict[tuple[str, str], int] = {}
        self.highest: dict[str, tuple[int, int]] = {}  # per key: the highest token written and its line
        self.writers: dict[str, dict[int, tuple[str, int, int]]] = {}  # per key: each token's first writer
        self.restarts = h.server_faults(*RESTARTS)
        self.writes = self.stale_rejected = self.interleavings = 0
        self.by_lease = _StaleByLease(h)
        self.behind = _BehindGrants() if h.caps.fencing_tokens else None

    def grant(self, g: Grant) -> None:
        if g.definite:
            self.by_lease.grant(g)
            if self.behind is not None and g.token is not None:
                self.behind.grant(g)

    def write(self, line: int, w: WriteRecord) -> None:
        self.writes += 1
        self.by_lease.write(line, w)
        if self.behind is not None:
            self.behind.write(w)
        if not w.accepted:
            self.stale_rejected += 1
            return
        h = self.h
        if w.token is None or not h.caps.fencing_tokens:
            return  # a tokenless lock's writes are judged by lease identity, never by tokens
        max_token, max_line = self.highest.get(w.key, (0, 0))
        token_writer = self.writers.setdefault(w.key, {})
        if w.token < max_token:
            severity: Severity = "violation" if w.fencing else "known-unsafe"
            why = ("the register accepted a stale token although fencing was on" if w.fencing else
                   "fencing off: a holder whose lease had been superseded wrote anyway")
            self._found(Finding(NAME_REGISTER, "stale-write", severity,
                                f"{w.client} wrote with token {w.token} after token {max_token} had "
                                f"written: {why}", w.time_ns, (w.client,), (w.token, max_token),
                                (max_line, line)))
            self.interleavings += 1
        owner = token_writer.setdefault(w.token, (w.client, line, w.time_ns))
        if owner[0] != w.client:
            # After a restart that forgot the token counter, tokens are issued again: known, not a lie.
            amnesia = not h.caps.durable and any(owner[2] <= f.end and f.start <= w.time_ns for f in self.restarts)
            promoted = not amnesia and h.lost_in_failover(w.time_ns, owner[2])
            self._found(Finding(NAME_REGISTER, "shared-token",
                                "known-unsafe" if amnesia or promoted else "violation",
                                f"{owner[0]} and {w.client} both wrote with token {w.token}: two owners "
                                "held the same fencing token"
                                + (" after a non-durable server restarted its counter" if amnesia else "")
                                + (": counter lost on promotion (asynchronous replication)" if promoted else ""),
                                w.time_ns, (owner[0], w.client), (w.token,), (owner[1], line)))
        if w.token >= max_token:
            self.highest[w.key] = (w.token, line)

    def _found(self, finding: Finding, keep: int = 20) -> None:
        """A stale holder writes many times: more than the first few per kind are never shown."""
        k = (finding.kind, finding.severity)
        self._per_kind[k] = self._per_kind.get(k, 0) + 1
        if self._per_kind[k] <= keep:
            self.findings.append(finding)

    def finish(self) -> CheckResult:
        h = self.h
        stale_by_lease = self.by_lease.count
        examples = list(self.by_lease.examples)
        if self.behind is not None:
            examples += self.behind.examples[:EXAMPLES - len(examples)]
            stale, stale_accepted = self.behind.stale, self.behind.accepted
        else:
            stale = stale_accepted = stale_by_lease
        stats: dict[str, object] = {"writes": self.writes, "stale_rejected_by_fencing": self.stale_rejected,
                                    "stale_accepted": self.interleavings + stale_by_lease, STALE_WRITES: stale,
                                    STALE_WRITES_ACCEPTED: stale_accepted}
        if not h.caps.fencing_tokens:
            stats["judged_by"] = "lease identity: the lock issues no fencing tokens"
        findings = _first_per_kind(self.by_lease.findings + self.findings)
        return CheckResult(NAME_REGISTER, tuple(findings), stats, examples=tuple(examples))


def check_register(h: History) -> CheckResult:
    judge = RegisterJudge(h)
    for g in h.grants:
        judge.grant(g)
    for line, w in h.writes:
        judge.write(line, w)
    return judge.finish()


class _BehindGrants:
    """Writes carrying a token below the highest granted by the time of the write, and how many of them
    the register accepted (the newer holder had not written yet, or fencing was off)."""

    def __init__(self) -> None:
        self.granted: list[tuple[int, int, str]] = []  # a heap: fed, not yet reached by a write's time
        self.highest: dict[str, int] = {}  # per key
        self.stale = self.accepted = 0
        self.examples: list[dict[str, Any]] = []

    def grant(self, g: Grant) -> None:
        assert g.token is not None
        heapq.heappush(self.granted, (g.acquire.complete, g.token, g.key))

    def write(self, w: WriteRecord) -> None:
        granted = self.granted
        while granted and granted[0][0] <= w.time_ns:
            _, token, key = heapq.heappop(granted)
            self.highest[key] = max(self.highest.get(key, 0), token)
        newer = self.highest.get(w.key, 0)
        if w.token is not None and w.token < newer:
            self.stale += 1
            self.accepted += w.accepted
            if len(self.examples) < EXAMPLES:
                self.examples.append(_stale_example(w, newer))


def _stale_example(w: WriteRecord, newer_token: int | None) -> dict[str, Any]:
    return {"kind": "stale-write", "client": w.client, "token": w.token, "newer_token": newer_token,
            "accepted": w.accepted, "at_ns": w.time_ns}


class _StaleByLease:
    """Tokenless writes judged by lease identity: a write by a holder whose own grant surely ended.

    Surely ended: the write came after the latest instant the writer's grant can have been in force,
    or another client was granted the lock after the writer's grant and before the write (the lease
    was superseded: either it had ended, or two held at once, which ``check_grants`` judges). A lock
    that issues no token cannot be fenced, so such a write is its declared hazard (known-unsafe),
    whatever the scenario's register policy.
    """

    def __init__(self, h: History) -> None:
        self.h = h
        self.granted: list[tuple[int, int, Grant]] = []  # a heap by complete, then feed order
        self.fed = 0
        self.believed: dict[tuple[str, str], Grant] = {}  # per client and key, its latest grant completed so far
        self.newest: dict[str, dict[str, Grant]] = {}  # per key and client, its latest-invoked grant completed so far
        self.count = 0
        self.findings: list[Finding] = []
        self.examples: list[dict[str, Any]] = []

    def grant(self, g: Grant) -> None:
        self.fed += 1
        heapq.heappush(self.granted, (g.acquire.complete, self.fed, g))

    def write(self, line: int, w: WriteRecord) -> None:
        h, granted = self.h, self.granted
        while granted and granted[0][0] <= w.time_ns:
            g = heapq.heappop(granted)[2]
            mine = self.newest.setdefault(g.key, {})
            if g.client not in mine or g.acquire.invoke > mine[g.client].acquire.invoke:
                mine[g.client] = g
            self.believed[g.client, g.key] = g
        if (w.token is not None and h.caps.fencing_tokens) or not w.accepted:
            return
        g_of = self.believed.get((w.client, w.key))  # the grant the writer believes in: its latest one granted by then
        if g_of is None:
            return
        g = g_of
        since = [o for c, o in self.newest.get(w.key, {}).items()
                 if c != w.client and o.acquire.invoke > g.acquire.complete]
        if w.time_ns <= g.latest_end and not since:
            return
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(_stale_example(w, None))
        if self.count > 20:
            return  # a stale holder writes many times; the first few prove the point
        other = min(since, key=lambda o: o.acquire.complete) if since else None
        why = (f"{other.client} was granted the lock after it (history line {other.acquire.line})"
               if other is not None else
               f"{(w.time_ns - g.latest_end) / 1e9:.3f} s after its lease had surely ended")
        self.findings.append(Finding(
            NAME_REGISTER, "stale-write", "known-unsafe",
            f"{w.client} wrote with a superseded lease: {why}; the lock issues no fencing token, so nothing "
            "can refuse a stale holder's write", w.time_ns, (w.client, *(() if other is None else (other.client,))),
            (), (g.acquire.line, *(() if other is None else (other.acquire.line,)), line)))


def _first_per_kind(findings: list[Finding], keep: int = 20) -> list[Finding]:
    """A stale holder writes many times; the first few per kind prove the point."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for f in findings:
        k = (f.kind, f.severity)
        seen[k] = seen.get(k, 0) + 1
        if seen[k] <= keep:
            out.append(f)
    return out
