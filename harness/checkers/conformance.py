"""Conformance: every outcome in the history is one the reference semantics allow.

Each call happened at an unknown instant of its window, expiry may land anywhere inside the declared
lag, and an indeterminate call may or may not have taken effect. An outcome is flagged only when
no timing allows it: a refusal while no grant can possibly have been in force, a success for an
owner whose grant cannot possibly still have been in force, a TTL other than the declared rounding.
"""

from __future__ import annotations

import bisect
from dataclasses import replace

from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.model import Grant, History, Op, new_op, possibly_held_within, surely_held_throughout
from lockchaos.harness.run.history import OpRecord

NAME = "conformance"


class _KeyGrants:
    """One key's grants as a call looks them up: those that may matter to a call are the ones sent by its
    completion (``acquire.invoke <= complete``) and not surely over before its invoke.

    The grants are in acquire-invoke order; a max segment tree over the instant each stops mattering
    (``latest_end + 1``, never before its own invoke) lists the ones still mattering at an invoke, in that
    order, in O(log n) per grant listed, whatever order the calls come in: a file is read in completion
    order, the in-memory history in invoke order, and both must judge alike. A refused acquire, most
    calls, needs only whether one of them may have been in force during the call: a prefix maximum."""

    def __init__(self, grants: list[Grant]) -> None:
        self.grants = grants
        self.invokes = [g.acquire.invoke for g in grants]
        self.reach: list[int] = []  # prefix maxima of latest_end
        for g in grants:
            self.reach.append(max(g.latest_end, self.reach[-1]) if self.reach else g.latest_end)
        size = 1
        while size < len(grants):
            size *= 2
        self._size = size
        tree = [-1] * (2 * size)
        for i, g in enumerate(grants):
            tree[size + i] = max(g.latest_end + 1, g.acquire.invoke)
        for i in range(size - 1, 0, -1):
            tree[i] = max(tree[2 * i], tree[2 * i + 1])
        self._tree = tree

    def sent_by(self, complete: int) -> int:
        """How many of the grants were sent by ``complete``: the candidates are a prefix."""
        return bisect.bisect_right(self.invokes, complete)

    def maybe_in_force(self, invoke: int, complete: int) -> bool:
        """Some grant sent by ``complete`` may last until ``invoke``."""
        n = self.sent_by(complete)
        return n > 0 and self.reach[n - 1] >= invoke

    def mattering(self, invoke: int, complete: int) -> list[Grant]:
        """The grants sent by ``complete`` that do not stop mattering by ``invoke``, in acquire-invoke order."""
        n = self.sent_by(complete)
        out: list[Grant] = []
        if n:
            self._collect(1, 0, self._size, n, invoke, out)
        return out

    def _collect(self, node: int, lo: int, hi: int, n: int, invoke: int, out: list[Grant]) -> None:
        if lo >= n or self._tree[node] <= invoke:
            return
        if hi - lo == 1:
            out.append(self.grants[lo])
            return
        mid = (lo + hi) // 2
        self._collect(2 * node, lo, mid, n, invoke, out)
        self._collect(2 * node + 1, mid, hi, n, invoke, out)


class _LiveGrants:
    """One key's grants fed as they come (``stream.py``), in acquire-invoke order, answering as
    ``_KeyGrants`` does; those that can no longer matter to any call still to come are let go (``prune``)."""

    def __init__(self) -> None:
        self.grants: list[Grant] = []
        self.invokes: list[int] = []
        self.reach: list[int] = []  # prefix maxima of latest_end

    def add(self, g: Grant) -> None:
        self.grants.append(g)
        self.invokes.append(g.acquire.invoke)
        self.reach.append(max(g.latest_end, self.reach[-1]) if self.reach else g.latest_end)

    def prune(self, before: int) -> None:
        """No call still to be judged was invoked before ``before``: a grant over by then never matters."""
        if any(g.latest_end < before for g in self.grants):
            kept = [g for g in self.grants if g.latest_end >= before]
            self.grants, self.invokes, self.reach = [], [], []
            for g in kept:
                self.add(g)

    def maybe_in_force(self, invoke: int, complete: int) -> bool:
        n = bisect.bisect_right(self.invokes, complete)
        return n > 0 and self.reach[n - 1] >= invoke

    def mattering(self, invoke: int, complete: int) -> list[Grant]:
        return [g for g in self.grants[:bisect.bisect_right(self.invokes, complete)]
                if max(g.latest_end + 1, g.acquire.invoke) > invoke]


class _Unseen:
    """One key's evidence that an acquire nobody heard of took effect later than its call can tell.

    An acquire that ended without an answer is bounded to take effect by its end plus the slack the run
    measured (``History.horizon``); a request can still wait longer, where the harness cannot see (a
    stalled proxy or server process: a reset acquire was seen to land 55 ms after its client gave up
    while the harness's own process ran 16 ms late). A lock with fencing tokens leaves the proof: the
    token it granted is missing between the definite grants around the refusal it caused. So a refusal
    of a free key is excused when another client's unheard acquire was sent after the last definite
    grant before the refusal, and the next definite grant's token skips one; without tokens, or without
    a gap, it is reported as before. The next grant may come long after the refusal: a streamed
    judgement holds the refusal until it does (``pending``), or reports it when the run ends first."""

    def __init__(self) -> None:
        self.definite: list[tuple[int, int]] = []  # (acquire invoke, token) of definite grants, invoke order
        self.invokes: list[int] = []  # their invokes, for bisection
        self.ghosts: list[tuple[int, str]] = []  # (acquire invoke, client) of unheard acquires, invoke order
        self.pending: list[tuple[int | None, int, int, list[Finding]]] = []
        """Refusals awaiting the next definite grant: (token before, invoke, line, findings)."""

    def add(self, g: Grant) -> None:
        if g.definite:
            if g.token is not None:
                self.definite.append((g.acquire.invoke, g.token))
                self.invokes.append(g.acquire.invoke)
        elif g.token is None:
            self.ghosts.append((g.acquire.invoke, g.client))

    def judge(self, op: Op) -> tuple[bool, int | None, int | None]:
        """Whether another client's unheard acquire can explain the refusal ``op``, and the tokens of the
        definite grants around it (the next one None while it is not known yet)."""
        i = bisect.bisect_right(self.invokes, op.complete)
        before_invoke, before = self.definite[i - 1] if i else (-1, None)
        after = self.definite[i][1] if i < len(self.definite) else None
        lo = bisect.bisect_right(self.ghosts, (before_invoke, "\uffff"))
        hi = bisect.bisect_right(self.ghosts, (op.complete, "\uffff"))
        return any(client != op.rec.client for _, client in self.ghosts[lo:hi]), before, after

    @staticmethod
    def skips(token_before: int | None, token_after: int) -> bool:
        return token_after > (token_before or 0) + 1

    def prune(self, before: int) -> None:
        """Calls still to come were invoked from ``before`` on: the definite grant before that is the
        earliest they can look back to, and unheard acquires sent before it no longer matter."""
        i = bisect.bisect_right(self.invokes, before) - 1
        if i > 0:
            del self.definite[:i]
            del self.invokes[:i]
        floor = self.definite[0][0] if self.definite else -1
        j = bisect.bisect_right(self.ghosts, (floor, "\uffff"))
        if j:
            del self.ghosts[:j]


class Judge:
    """Judges each call on its own against the grants: calls may be fed in any order; findings come out
    in invoke order (ties in history order), as a sweep in invoke order reports them.

    Either every grant is known before the first call (``Judge(h)``), or they are fed as they come
    (``Judge(h, fed=True)``, ``grant``), each before any call completing after its invoke."""

    def __init__(self, h: History, *, fed: bool = False) -> None:
        self.h = h
        self._keys: dict[str, _KeyGrants | _LiveGrants] = {}
        self._live: dict[str, _LiveGrants] = {}
        self.grants = 0
        if not fed:
            by_key: dict[str, list[Grant]] = {}
            for g in h.grants:
                by_key.setdefault(g.key, []).append(g)
            self._keys = {key: _KeyGrants(grants) for key, grants in by_key.items()}
            self.grants = len(h.grants)
        self._found: list[tuple[int, int, list[Finding]]] = []
        self.counted = 0
        self._fed = fed
        self._unseen: dict[str, _Unseen] = {}
        if h.caps.fencing_tokens and not fed:
            for g in h.grants:
                self._unseen_of(g.key).add(g)

    def _unseen_of(self, key: str) -> _Unseen:
        unseen = self._unseen.get(key)
        if unseen is None:
            unseen = self._unseen[key] = _Unseen()
        return unseen

    def grant(self, g: Grant) -> None:
        self.grants += 1
        live = self._live.get(g.key)
        if live is None:
            live = self._live[g.key] = _LiveGrants()
            self._keys[g.key] = live
        live.add(g)
        if self.h.caps.fencing_tokens:
            unseen = self._unseen_of(g.key)
            unseen.add(g)
            if g.definite and g.token is not None and unseen.pending:
                for token_before, invoke, line, findings in unseen.pending:
                    if not unseen.skips(token_before, g.token):
                        self._found.append((invoke, line, findings))
                unseen.pending.clear()

    def prune(self, before: int) -> None:
        for live in self._live.values():
            live.prune(before)
        for unseen in self._unseen.values():
            unseen.prune(before)

    def op(self, line: int, rec: OpRecord) -> None:
        if rec.outcome == "indeterminate":  # unmapped exceptions too: the error-handling checker reports them
            return
        self.counted += 1
        keyed = self._keys.get(rec.key)
        invoke, complete = rec.invoke_ns, rec.complete_ns
        if rec.op == "acquire" and rec.outcome == "fail" and keyed is not None \
                and keyed.maybe_in_force(invoke, complete):
            return  # refused while a grant may have been in force: most calls, judged here cheaply
        if rec.op not in ("acquire", "renew", "release", "holder"):
            return
        op = new_op(line, rec)
        active = [] if keyed is None else keyed.mattering(invoke, complete)
        findings: list[Finding] = []
        if rec.op == "acquire":
            _acquire(self.h, op, active, findings)
        elif rec.op in ("renew", "release"):
            owner = str(rec.args.get("owner", rec.client))
            mine = [g for g in active if g.owner == owner and g.acquire.line != line]
            _owner_op(self.h, op, mine, findings)
        else:
            _holder(self.h, op, active, findings)
        if findings and findings[-1].kind == "refused-free-key" and rec.key in self._unseen:
            unseen = self._unseen[rec.key]
            explained, before, after = unseen.judge(op)
            if explained and after is None and self._fed:  # the next grant is still to come
                unseen.pending.append((before, invoke, line, findings))
                return
            if explained and after is not None and unseen.skips(before, after):
                return
        if findings:
            self._found.append((invoke, line, findings))

    def finish(self) -> CheckResult:
        for unseen in self._unseen.values():  # no grant came after them: nothing shows a token skipped
            self._found.extend((invoke, line, findings) for _, invoke, line, findings in unseen.pending)
            unseen.pending.clear()
        self._found.sort(key=lambda found: (found[0], found[1]))
        findings = tuple(f for _, _, fs in self._found for f in fs)
        return CheckResult(NAME, findings, {"ops_checked": self.counted, "grants": self.grants})


def check(h: History) -> CheckResult:
    judge = Judge(h)
    for op in h.ops:
        judge.op(op.line, op.rec)
    return judge.finish()


def _tok(token: int | None) -> str:
    return "" if token is None else f" (token {token})"


def _finding(op: Op, kind: str, message: str, *lines: int, tokens: tuple[int, ...] = ()) -> Finding:
    return Finding(NAME, kind, "violation", message, op.complete, (op.rec.client,), tokens,
                   (op.line, *lines))


def _acquire(h: History, op: Op, active: list[Grant], findings: list[Finding]) -> None:
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
        mine = [g for g in active if g.owner == str(owner) and g.acquire.line != op.line]
        for g in mine:
            if surely_held_throughout(h, g, op.invoke, op.complete):
                findings.append(_finding(op, "reentrant-grant",
                                         f"acquire by {owner} succeeded while its own lease{_tok(g.token)} was "
                                         "surely in force: the lock is re-entrant", g.acquire.line))
                break
        return
    # A refusal needs a grant that may have been in force at some instant of the call.
    others = [g for g in active if g.acquire.line != op.line]
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
        # Strictly before: a grant completing at the instant the question is sent (virtual time's calls
        # take none, and a worker asks right before it acquires) may have come after the answer.
        held = [g for g in active
                if g.acquire.complete < op.invoke and surely_held_throughout(h, g, op.invoke, op.complete)]
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
