"""Conformance: every outcome in the history is one the reference semantics allow.

Each call happened at an unknown instant of its window, expiry may land anywhere inside the declared
lag, and an indeterminate call may or may not have taken effect. An outcome is flagged only when
no timing allows it: a refusal while no grant can possibly have been in force, a success for an
owner whose grant cannot possibly still have been in force, a TTL other than the declared rounding.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import replace

from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import Grant, History, Op, possibly_held_within, surely_held_throughout

NAME = "conformance"


class _Window:
    """One key's grants that can matter at a given time: its ops are visited in invoke order.

    A grant leaves once it surely ended before the op's invoke (and was sent by then): a heap on that
    instant drops it in O(log n), and an index by owner finds an owner's grants without walking the
    others, so that a key with hundreds of short grants in force (a stress run) costs per op what one
    with a single holder does. Both keep the grants in acquire-invoke order."""

    def __init__(self, grants: list[Grant]) -> None:
        self._grants = grants  # in acquire-invoke order, as the history's grants are
        self._next = 0
        self._live: dict[int, Grant] = {}
        self._by_owner: dict[str, dict[int, Grant]] = {}
        self._leaving: list[tuple[int, int]] = []  # (the first invoke it is dropped at, grant index)

    @property
    def active(self) -> Iterable[Grant]:
        return self._live.values()

    def of_owner(self, owner: str) -> Iterable[Grant]:
        return self._by_owner.get(owner, _EMPTY).values()

    def at(self, op: Op) -> _Window:
        grants = self._grants
        while self._next < len(grants) and grants[self._next].acquire.invoke <= op.complete:
            g, i = grants[self._next], self._next
            self._live[i] = g
            self._by_owner.setdefault(g.owner, {})[i] = g
            heapq.heappush(self._leaving, (max(g.latest_end + 1, g.acquire.invoke), i))
            self._next += 1
        invoke = op.invoke
        leaving = self._leaving
        while leaving and leaving[0][0] <= invoke:
            _, i = heapq.heappop(leaving)
            g = self._live.pop(i)
            del self._by_owner[g.owner][i]
        return self


_EMPTY: dict[int, Grant] = {}


def _windows(h: History) -> dict[str, _Window]:
    """A window per key: a grant on one key says nothing about another's."""
    by_key: dict[str, list[Grant]] = {}
    for g in h.grants:
        by_key.setdefault(g.key, []).append(g)
    return {key: _Window(grants) for key, grants in by_key.items()}


def check(h: History) -> CheckResult:
    findings: list[Finding] = []
    windows = _windows(h)
    counted = 0
    for op in h.ops_by_invoke:
        rec = op.rec
        window = windows[rec.key].at(op) if rec.key in windows else _Window([])
        if rec.outcome == "indeterminate":  # unmapped exceptions too: the error-handling checker reports them
            continue
        counted += 1
        if rec.op == "acquire":
            if rec.outcome == "fail" and any(g.acquire.invoke <= op.complete and g.latest_end >= op.invoke
                                             for g in window.active):
                continue  # refused while a grant may have been in force: most calls, judged here cheaply
            _acquire(h, op, window, findings)
        elif rec.op in ("renew", "release"):
            owner = str(rec.args.get("owner", rec.client))
            mine = [g for g in window.of_owner(owner) if g.acquire is not op]
            _owner_op(h, op, mine, findings)
        elif rec.op == "holder":
            _holder(h, op, list(window.active), findings)
    return CheckResult(NAME, tuple(findings), {"ops_checked": counted, "grants": len(h.grants)})


def _tok(token: int | None) -> str:
    return "" if token is None else f" (token {token})"


def _finding(op: Op, kind: str, message: str, *lines: int, tokens: tuple[int, ...] = ()) -> Finding:
    return Finding(NAME, kind, "violation", message, op.complete, (op.rec.client,), tokens,
                   (op.line, *lines))


def _acquire(h: History, op: Op, window: _Window, findings: list[Finding]) -> None:
    rec = op.rec
    requested = int(rec.args.get("ttl_ms", h.ttl_ms))
    if rec.outcome == "ok" and rec.lease is not None:
        applied = h.caps.applied_ttl(requested)
        if int(rec.lease["ttl_ms"]) != applied:
            findings.append(_finding(op, "ttl", f"acquire applied ttl {rec.lease['ttl_ms']} ms; declared "
                                     f"rounding of {requested} ms gives {applied} ms"))
        owner = rec.args.get("owner", rec.client)
        if rec.lease.get("owner") not in (None, owner):
            findings.append(_finding(op, "owner", f"acquire returned a lease for {rec.lease['owner']!r}"))
        # Not re-entrant: a grant to an owner whose own earlier grant was surely still in force.
        for g in window.of_owner(str(owner)):
            if g.acquire is not op and surely_held_throughout(h, g, op.invoke, op.complete):
                findings.append(_finding(op, "reentrant-grant",
                                         f"acquire by {owner} succeeded while its own lease{_tok(g.token)} was "
                                         "surely in force: the lock is re-entrant", g.acquire.line))
                break
        return
    # A refusal needs a grant that may have been in force at some instant of the call.
    others = [g for g in window.active if g.acquire is not op]
    if not any(possibly_held_within(g, op.invoke, op.complete) for g in others):
        found = _finding(op, "refused-free-key",
                         "acquire refused although no grant can have been in force during the call")
        # Declared by a quorum lock whose votes split or time out (Redlock): its known hazard, counted.
        findings.append(replace(found, severity="known-unsafe") if h.caps.spurious_refusals else found)


def _owner_op(h: History, op: Op, mine: list[Grant], findings: list[Finding]) -> None:
    rec = op.rec
    live = [g for g in mine if possibly_held_within(g, op.invoke, op.complete)]
    if rec.outcome == "ok":
        if not live:
            findings.append(_finding(op, f"{rec.op}-after-end",
                                     f"{rec.op} succeeded although the owner's lease cannot have been in "
                                     "force (expired, released or never granted)"))
            return
        if rec.op == "renew" and rec.lease is not None:
            tokens = {g.token for g in live if g.token is not None}
            raw = rec.lease.get("token")
            token = None if raw is None or not h.caps.fencing_tokens else int(raw)
            if token is not None and tokens and token not in tokens and all(g.definite for g in live):
                findings.append(_finding(op, "renew-token", f"renew returned token {token}, the grant has "
                                         f"{sorted(tokens)}", *(g.acquire.line for g in live),
                                         tokens=(token, *sorted(tokens))))
            applied = h.caps.applied_ttl(int(rec.args.get("ttl_ms", h.ttl_ms)))
            if int(rec.lease["ttl_ms"]) != applied:
                findings.append(_finding(op, "ttl", f"renew applied ttl {rec.lease['ttl_ms']} ms, declared "
                                         f"rounding gives {applied} ms"))
        return
    held = [g for g in mine if surely_held_throughout(h, g, op.invoke, op.complete)]
    if held:
        g = held[0]
        findings.append(_finding(op, f"{rec.op}-refused-for-holder",
                                 f"{rec.op} refused although the owner's lease{_tok(g.token)} was surely "
                                 "in force for the whole call", g.acquire.line,
                                 tokens=() if g.token is None else (g.token,)))


def _holder(h: History, op: Op, active: list[Grant], findings: list[Finding]) -> None:
    """Judge only what ``holder()`` is declared to tell: owner and token, the owner, or presence."""
    lease = op.rec.lease
    info = h.caps.holder_info
    if info == "none":
        return
    if lease is None:
        held = [g for g in active if surely_held_throughout(h, g, op.invoke, op.complete)]
        if held:
            g = held[0]
            findings.append(_finding(op, "holder-missed",
                                     f"holder saw no lease while {g.owner}'s{_tok(g.token)} was surely in force",
                                     g.acquire.line, tokens=() if g.token is None else (g.token,)))
        return
    owner = str(lease["owner"])
    raw = lease.get("token")
    token = None if raw is None or not h.caps.fencing_tokens else int(raw)
    candidates = [g for g in active if (info == "presence" or g.owner == owner)
                  and (token is None or g.token in (token, None))
                  and possibly_held_within(g, op.invoke, op.complete)]
    if not candidates:
        who = "a holder" if info == "presence" else owner + ("" if token is None else f" with token {token}")
        findings.append(_finding(op, "holder-phantom",
                                 f"holder reported {who}, which cannot have been in force "
                                 "(expired, released or never granted)", tokens=() if token is None else (token,)))
