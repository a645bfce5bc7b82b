"""Judging a history file in memory that does not grow with its length: two reads, nothing kept behind.

A long run's history holds millions of calls; loading them costs about 300 bytes an event, and even
keeping only the grants grows with the run. Here:

1. **Context read.** Every line is looked at, but only the faults and the notes are parsed and kept;
   a call or a write is recognised by its bytes (``to_json_bytes`` writes sorted keys, no spaces) and
   only its time is read, for the run's end (an acquire that may have made a grant is parsed for its
   owner: whether one client alone used an owner id is a whole-run fact the hindsight rule needs).
2. **Streamed read.** Every record is read again, in file order. The checkers that look at one call
   or write at a time (``error-handling``, ``slow-call``, ``residue``, liveness's per-call part) take
   it at once. The others need the grants, and a grant's bounds need every renew and release of it:
   calls are made into grants in invoke order behind a **watermark** W (each client calls one call at
   a time, so no record still to come was sent before the earliest of the clients' latest completes),
   a grant is complete once its client opens its next grant of the key, and complete grants are fed,
   in invoke order, to the grant checkers (``exclusion`` by grants, ``fencing``, the register's and
   liveness's indexes, ``conformance``'s per-key grants). A call or write is judged once every grant
   sent before it completed has been fed, then let go; a grant is let go once nothing still to be
   judged can reach back to it. What is kept at any instant is what the last few seconds of the run
   can still touch.

The second read checks what the first assumed (every line it read by its bytes was what it seemed,
the run's end and the owners are the same) and that no record was sent before the watermark had
already passed it. If anything differs, or if reading fails anywhere, the file is judged the old way,
by ``load_history``: the same findings and the same errors, only not in flat memory.

Memory then grows only while some client stops calling (the watermark waits for it) or holds one
grant of a key and never asks for that key again (that grant, and every grant after it, waits to be
complete): at the run's end both are let go. The ``History`` handed back holds the run's context
(meta, faults, end), no calls, no writes and no grants.
"""

from __future__ import annotations

import gc
import heapq
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from lockchaos.harness.checkers import conformance, errors, exclusion, fencing, liveness, residue, slowcalls
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.checkers.model import (
    Grant,
    GrantBuilder,
    History,
    Notes,
    Op,
    bound_grant,
    history_of,
    load_records,
    new_op,
)
from lockchaos.harness.run.history import (
    MAX_LINE_BYTES,
    NoteRecord,
    OpRecord,
    Record,
    WriteRecord,
    numbered_lines,
    possible_record,
    read_history,
)

WRITE_MARK = b'"type":"write"'
"""Every write line holds this (sorted keys, no spaces: ``to_json_bytes``)."""
OP_MARK = b'"type":"op"'
ACQUIRE_MARK, REFUSED_MARK = b'"op":"acquire"', b'"outcome":"fail"'
"""An acquire's line holds the first; a refused one's the second too: it makes no grant."""
EVERY = 512
"""Records read between two advances of the watermark: each costs a look at every client."""
GRANT_OPS = frozenset({"acquire", "renew", "release"})
END_OF_TIME = 1 << 63
PRUNE_EVERY = 4
"""Advances between two prunings of conformance's grants (each looks at every call still waiting)."""


class Unstreamable(Exception):
    """The file breaks an assumption of the two reads: judged by ``load_history`` instead."""


def check_file(path: Path) -> tuple[History, list[CheckResult]]:
    """What ``check_history`` finds in the history file ``path``, in memory that does not grow with its length."""
    try:
        return _streamed(path)
    except Exception:  # any failure: judged again the old way, which reports it as before
        return judged_whole(path)


def judged_whole(path: Path) -> tuple[History, list[CheckResult]]:
    """The history loaded whole and judged: what a file that cannot be streamed gets."""
    from lockchaos.harness.checkers import CHECKERS
    from lockchaos.harness.checkers.model import load_history

    h = load_history(path)
    return h, [checker(h) for checker in CHECKERS]


observe_grant: list[Callable[[Grant], object]] = []
"""Tests and ``bench/compare_checkers.py`` may append a callable here: each grant is passed to it once
bounded (a streamed judgement keeps none to hand back)."""


def _streamed(path: Path) -> tuple[History, list[CheckResult]]:
    seen = _Seen()
    notes = Notes()
    collecting = gc.isenabled()
    gc.disable()  # the context read allocates and frees no cycles (see ``load_history``)
    try:
        meta, ops, writes, faults, end_ns, truncated = load_records(_context(path, seen, notes), notes)
    finally:
        if collecting:
            gc.enable()
    h = history_of(meta, ops, writes, faults, end_ns, truncated, notes)
    return h, _Stream(h, seen).judge(path)


class _Seen:
    """What the context read saw without keeping it, for the streamed read to check."""

    def __init__(self) -> None:
        self.ops = self.writes = self.others = 0
        self.owners: list[tuple[str, str]] = []  # (owner, client) of each acquire that may have made a grant
        self.exclusive: set[str] = set()


def _context(path: Path, seen: _Seen, notes: Notes) -> Iterator[tuple[int, Record]]:
    """The faults and notes, numbered; the calls and writes only timed (``notes.unread_end_ns``)."""
    unread_end = 0
    pairs: dict[tuple[str, str], None] = {}
    for number, line, whole in numbered_lines(path):
        if len(line) > MAX_LINE_BYTES:
            raise Unstreamable(f"line {number} too long")
        # A last line without its newline is parsed in full: a record if it parses, else torn and ignored.
        t = -1
        if whole and WRITE_MARK in line:
            t = _int_after(line, b'"time_ns":')
            seen.writes += 1
        elif whole and OP_MARK in line:
            seen.ops += 1
            if ACQUIRE_MARK in line and REFUSED_MARK not in line:
                rec = possible_record(line)
                if type(rec) is not OpRecord:
                    raise Unstreamable(f"line {number}: not the op it seemed")
                pairs.setdefault((str(rec.args.get("owner", rec.client)), rec.client), None)
            t = _int_after(line, b'"complete_ns":')
        if t >= 0:
            if t > unread_end:
                unread_end = notes.unread_end_ns = t
            continue
        try:
            rec = possible_record(line)
        except ValueError:
            if not whole:  # a torn last line: ignored, as ``read_history`` does
                break
            raise
        kind = type(rec)
        if kind is OpRecord or kind is WriteRecord:  # a torn-looking last line that parsed
            if kind is OpRecord:
                seen.ops += 1
                if rec.op == "acquire" and rec.outcome != "fail":  # type: ignore[union-attr]
                    pairs.setdefault((str(rec.args.get("owner", rec.client)), rec.client), None)  # type: ignore[union-attr]
                t = rec.complete_ns  # type: ignore[union-attr]
            else:
                seen.writes += 1
                t = rec.time_ns  # type: ignore[union-attr]
            if t > unread_end:
                unread_end = notes.unread_end_ns = t
            continue
        seen.others += 1
        yield number, rec
    seen.exclusive = exclusion.exclusive_of(pairs)


def _int_after(line: bytes, name: bytes) -> int:
    """The integer following ``name`` up to the next field (sorted keys: ``complete_ns`` and ``time_ns``
    are never last); the streamed read checks the run's end it gives against the parsed records."""
    start = line.index(name) + len(name)
    return int(line[start:line.index(b",", start)])


class _Stream:
    """The streamed read's state: what is waiting for the watermark, and the judges it feeds."""

    def __init__(self, h: History, seen: _Seen) -> None:
        self.h, self.seen = h, seen
        self.conf = conformance.Judge(h, fed=True)
        self.grants_judge = exclusion.GrantsJudge(h, seen.exclusive)
        self.register = exclusion.RegisterJudge(h)
        self.fence = fencing.Judge(h)
        self.calls = liveness.Calls(h)
        self.look = liveness.gathered(h)
        self.errs, self.slow, self.left = errors.Judge(h), slowcalls.Judge(h), residue.Judge(h)
        self.builder = GrantBuilder(h)
        self.last_complete: dict[str, int] = {}  # per client: no call of it still to come was sent before
        self.used = -1  # the highest watermark acted on: every record read later must be sent at or after it
        self.unbuilt: list[tuple[int, int, Op]] = []  # a heap by invoke: calls that may make or join grants
        self.incomplete: deque[Grant] = deque()  # grants in invoke order, waiting to be complete and fed
        self.complete_ids: set[int] = set()
        self.calls_waiting: deque[tuple[int, OpRecord]] = deque()  # calls to judge, in file order
        self.granted_waiting: list[tuple[int, int, Op]] = []  # a heap by complete: granted acquires and renews
        self.writes_waiting: deque[tuple[int, WriteRecord]] = deque()
        self.pairs: dict[tuple[str, str], None] = {}
        self.judged = 0
        self.gone: dict[str, int] = {}  # clients that call no more, with their last complete
        self.retired: set[str] = set()  # older incarnations of a worker: they call no more
        self.unseen: set[str] = set()  # clients that said they opened (a note) and have not called yet
        self.observers = list(observe_grant)

    def judge(self, path: Path) -> list[CheckResult]:
        seen, h = self.seen, self.h
        ops = writes = others = end_ns = 0
        calls_op, errs_op, slow_op, left_op = self.calls.op, self.errs.op, self.slow.op, self.left.op
        # The loop runs once per event: what it touches is bound to locals (about a third of its time).
        last_complete, pairs = self.last_complete, self.pairs
        waiting, writes_waiting = self.calls_waiting.append, self.writes_waiting.append
        unbuilt, granted = self.unbuilt, self.granted_waiting
        push = heapq.heappush
        used, countdown = self.used, EVERY
        for number, rec in enumerate(read_history(path, kept=False), start=1):
            kind = type(rec)
            if kind is OpRecord:
                ops += 1
                invoke, t, client = rec.invoke_ns, rec.complete_ns, rec.client  # type: ignore[union-attr]
                if invoke < used:
                    raise Unstreamable(f"line {number}: sent before the watermark had passed it")
                last = last_complete.get(client)
                if last is None:
                    if client in self.retired:
                        raise Unstreamable(f"line {number}: {client} called again after its next incarnation")
                    self._newcomer(client)
                    last_complete[client] = t
                    self.unseen.discard(client)
                elif t > last:
                    last_complete[client] = t
                waiting((number, rec))  # type: ignore[arg-type]
                name, outcome = rec.op, rec.outcome  # type: ignore[union-attr]
                if name in GRANT_OPS and (outcome != "fail" or name != "acquire"):  # a refused acquire makes none
                    op = new_op(number, rec)  # type: ignore[arg-type]
                    if name == "acquire":
                        pairs.setdefault((str(rec.args.get("owner", client)), client), None)  # type: ignore[union-attr]
                    push(unbuilt, (invoke, number, op))
                    if outcome == "ok" and name != "release":
                        push(granted, (t, number, op))
                calls_op(number, rec)  # type: ignore[arg-type]
                errs_op(number, rec)  # type: ignore[arg-type]
                slow_op(number, rec)  # type: ignore[arg-type]
                left_op(number, rec)  # type: ignore[arg-type]
            elif kind is WriteRecord:
                writes += 1
                writes_waiting((number, rec))  # type: ignore[arg-type]
                t = rec.time_ns  # type: ignore[union-attr]
            else:
                others += 1
                t = rec.time_ns  # type: ignore[union-attr]
                if kind is NoteRecord and rec.kind == "client":  # type: ignore[union-attr]
                    self._opened(str(rec.data.get("client")))  # type: ignore[union-attr]
            if t > end_ns:
                end_ns = t
            countdown -= 1
            if not countdown:
                countdown = EVERY
                self._advance(self._watermark())
                used = self.used
        if (ops, writes, others, end_ns) != (seen.ops, seen.writes, seen.others, h.end_ns) \
                or exclusion.exclusive_of(self.pairs) != seen.exclusive:
            raise Unstreamable("the two reads disagree")
        self._advance(None)
        return [self.conf.finish(), self.grants_judge.finish(), self.register.finish(), self.fence.finish(),
                self.calls.finish(self.look), self.errs.finish(), self.slow.finish(), self.left.finish()]

    def _opened(self, client: str) -> None:
        """A worker's note that it opened its client: its first call may come at any instant from now on,
        so the watermark waits for it (a worker restarted after a crash writes one too)."""
        if client not in self.last_complete and client not in self.retired:
            self.unseen.add(client)

    def _newcomer(self, client: str) -> None:
        """A worker restarted after a crash calls as a new incarnation of its slot (``w3#2`` after
        ``w3#1``): the old one never calls again: it no longer holds the watermark back, and its grants
        are complete once all its calls are built. Were it to call again, its call would be sent before
        the watermark and the file judged whole."""
        slot, mark, n = client.rpartition("#")
        if not mark or not n.isdigit():
            return
        incarnation = int(n)
        for other in [c for c in (*self.last_complete, *self.unseen) if c.startswith(slot + "#")]:
            rest = other[len(slot) + 1:]
            if rest.isdigit() and int(rest) < incarnation:
                self.unseen.discard(other)
                self.retired.add(other)
                if other in self.last_complete:
                    self.gone[other] = self.last_complete.pop(other)

    def _watermark(self) -> int:
        """No record still to come was sent before this: each client's next call is sent after its last
        completes (checked as each is read); a client that said it opened but has not called yet may
        still send its first call at any instant."""
        return -1 if self.unseen else min(self.last_complete.values(), default=-1)

    def _advance(self, watermark: int | None) -> None:
        """Make grants of the calls sent before ``watermark`` (``None``: the file is read, all of them),
        feed the complete ones, and judge what they were waited for."""
        end = watermark is None
        w = END_OF_TIME if watermark is None else watermark
        if w > self.used:
            self.used = w
        unbuilt, builder = self.unbuilt, self.builder
        while unbuilt and unbuilt[0][0] < w:
            op = heapq.heappop(unbuilt)[2]
            before = builder.current.get((op.rec.client, op.rec.key))
            g = builder.op(op)
            if g is not None:
                if before is not None:
                    self.complete_ids.add(id(before))
                self.incomplete.append(g)
        builder.grants.clear()
        for client, last in list(self.gone.items()):
            if last < w:  # every call it made is built: its grants are complete, and nothing joins them now
                del self.gone[client]
                for c, key in [ck for ck in builder.current if ck[0] == client]:
                    self.complete_ids.add(id(builder.current.pop((c, key))))
        incomplete, complete_ids = self.incomplete, self.complete_ids
        while incomplete and (end or id(incomplete[0]) in complete_ids):
            g = incomplete.popleft()
            complete_ids.discard(id(g))
            self._feed(g)
        # Every grant sent before this is fed, final: what completed before it can be judged.
        fed_to = incomplete[0].acquire.invoke if incomplete else w
        fed_to = min(fed_to, w)
        self._judge_waiting(fed_to)

    def _feed(self, g: Grant) -> None:
        bound_grant(self.h, g)
        for observe in self.observers:
            observe(g)
        self.grants_judge.grant(g)
        self.fence.grant(g)
        self.register.grant(g)
        self.conf.grant(g)
        self.look.grant(g)

    def _judge_waiting(self, fed_to: int) -> None:
        waiting, granted = self.calls_waiting, self.granted_waiting
        conf, look = self.conf, self.look
        while waiting and waiting[0][1].complete_ns < fed_to:  # in any order: findings are sorted
            conf.op(*waiting.popleft())
        while granted and granted[0][0] < fed_to:  # in complete order, ties in file order
            look.granted(heapq.heappop(granted)[2])
        writes, register = self.writes_waiting, self.register
        while writes and writes[0][1].time_ns < fed_to:
            line, w = writes.popleft()
            register.write(line, w)
        self.judged += 1
        if self.judged % PRUNE_EVERY == 0 or fed_to == END_OF_TIME:
            # No call still to be judged was sent before this: a grant over by then matters to none of them.
            sent_from = min((rec.invoke_ns for _, rec in waiting), default=fed_to)
            conf.prune(min(sent_from, fed_to))
