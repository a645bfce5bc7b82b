"""What liveness asks of the grants and the granted calls, answered two ways.

``Indexed`` sorts and indexes a whole history's grants and calls; ``Gathered`` is fed them as a
streamed judgement makes them (``stream.py``) and keeps, per fault, only the answers: who held a key at
the fault, the longest lease in force then, the first grant after it. Both answer alike: a fault's
questions are about the instants around it, and every grant and call is fed once final (a grant with
all its renews and releases, in acquire-invoke order; a granted call in complete order, ties in history
order, once every grant sent before it completed has been fed).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from lockchaos.harness.checkers.model import FaultWindow, Grant, History, Op


class Lookups(Protocol):
    def keys(self) -> list[str]:
        """Every key ever granted (a lock nobody held has no holder to fail over from), in first-grant order."""

    def held_at(self, f: FaultWindow, key: str, victims: set[str]) -> bool:
        """Some victim of ``f`` had a grant of ``key`` completed by ``f.start`` that may last until then,
        and not before another client's last granted acquire of it by then was sent (that grant proves
        the victim's over, whatever an unanswered renew may seem to have prolonged)."""

    def ghosts_due(self, key: str | None, due: int, since: int, others_than: Collection[str], margin: float,
                   before: int | None = None) -> int:
        """``due`` pushed past the ghost grants of ``key`` (``None``: of any key) that may still hold it
        (``_Ghosts.excused_until``)."""

    def next_acquire(self, f: FaultWindow, key: str, victims: set[str]) -> Op | None:
        """The first granted acquire of ``key`` by another client completed after ``f.start``."""

    def free_from(self, f: FaultWindow) -> int:
        """``f.end`` or, if later, the latest end of any grant sent by then."""

    def acquire_after(self, f: FaultWindow) -> Op | None:
        """The first granted acquire of any key completed after ``f.end``."""

    def granted_from(self, f: FaultWindow) -> Op | None:
        """The first granted acquire or renew (in complete order) sent at or after ``f.start``."""

    def left_at(self, f: FaultWindow) -> int | None:
        """The latest end of the grants completed by ``f.start``, if one may last until then."""


def _complete(op: Op) -> int:
    return op.complete


def _granted(op: Op, *kinds: str) -> bool:
    return op.rec.outcome == "ok" and op.rec.op in kinds


class Indexed:
    """A whole history's grants and granted calls, sorted and indexed once."""

    def __init__(self, h: History) -> None:
        self.h = h
        # Sorted by complete from history order, so that calls completing at the same instant keep it.
        self.acquires = sorted((o for o in h.ops if _granted(o, "acquire")), key=_complete)
        self.by_key = _key_indexes(h)

    def keys(self) -> list[str]:
        return list(self.by_key)

    def held_at(self, f: FaultWindow, key: str, victims: set[str]) -> bool:
        k = self.by_key[key]
        taken = k.last_taken_by_others(victims, f.start)
        return any(k.holding.held_at(v, f.start, taken) for v in victims)

    def ghosts_due(self, key: str | None, due: int, since: int, others_than: Collection[str], margin: float,
                   before: int | None = None) -> int:
        if key is not None:
            return self.by_key[key].ghosts.excused_until(due, since, others_than, margin, before)
        return self._all_ghosts.excused_until(due, since, others_than, margin, before)

    def next_acquire(self, f: FaultWindow, key: str, victims: set[str]) -> Op | None:
        k = self.by_key[key]
        return next((o for o in _from(k.acquires, bisect.bisect_right(k.acquire_completes, f.start))
                     if o.rec.client not in victims), None)

    def free_from(self, f: FaultWindow) -> int:
        return max(f.end, _max_upto(self._ends_by_invoke, f.end) or f.end)

    def acquire_after(self, f: FaultWindow) -> Op | None:
        i = bisect.bisect_right(self._acquire_completes, f.end)
        return self.acquires[i] if i < len(self.acquires) else None

    def granted_from(self, f: FaultWindow) -> Op | None:
        grants, invokes, first_pos = self._granted
        k = bisect.bisect_left(invokes, f.start)
        return grants[first_pos[k]] if k < len(first_pos) else None

    def left_at(self, f: FaultWindow) -> int | None:
        return _max_upto(self._ends_by_complete, f.start)

    @functools.cached_property
    def _all_ghosts(self) -> _Ghosts:
        return _Ghosts.of(self.h.grants)  # on any key: a recovery is judged on any key's grant

    @functools.cached_property
    def _ends_by_invoke(self) -> tuple[list[int], list[int]]:
        return _prefix_max([(g.acquire.invoke, g.latest_end) for g in self.h.grants])

    @functools.cached_property
    def _ends_by_complete(self) -> tuple[list[int], list[int]]:
        return _prefix_max([(g.acquire.complete, g.latest_end) for g in self.h.grants])

    @functools.cached_property
    def _acquire_completes(self) -> list[int]:
        return [o.complete for o in self.acquires]

    @functools.cached_property
    def _granted(self) -> tuple[list[Op], list[int], list[int]]:
        """Granted acquires and renews in complete order; their invokes in order, and from each on the
        smallest complete-order position: the first grant (in complete order) sent at or after an instant."""
        grants = sorted((o for o in self.h.ops if _granted(o, "acquire", "renew")), key=_complete)
        by_invoke = sorted(range(len(grants)), key=lambda i: grants[i].invoke)
        invokes = [grants[i].invoke for i in by_invoke]
        first_pos = list(by_invoke)
        for k in range(len(first_pos) - 2, -1, -1):
            first_pos[k] = min(first_pos[k], first_pos[k + 1])
        return grants, invokes, first_pos


@dataclass(frozen=True, slots=True)
class _KeyIndex:
    """One key's calls as the holder-failover judgement looks them up: its granted acquires in complete
    order, and who may hold it when."""

    acquires: list[Op]
    acquire_completes: list[int]
    holding: _HeldIndex
    ghosts: _Ghosts

    def last_taken_by_others(self, victims: Collection[str], at: int) -> int | None:
        """The invoke of the last acquire granted by ``at`` to a client not among ``victims``: a victim's
        grant made before it was over when it was granted."""
        for j in range(bisect.bisect_right(self.acquire_completes, at) - 1, -1, -1):
            if self.acquires[j].rec.client not in victims:
                return self.acquires[j].invoke
        return None


def _key_indexes(h: History) -> dict[str, _KeyIndex]:
    """Per key that was ever granted (a lock nobody held has no holder to fail over from)."""
    acquires: dict[str, list[Op]] = {}  # in history order, then sorted by complete: ties keep that order
    for o in h.ops:
        if _granted(o, "acquire"):
            acquires.setdefault(o.rec.key, []).append(o)
    grants: dict[str, list[Grant]] = {}
    for g in h.grants:
        grants.setdefault(g.key, []).append(g)
    out = {}
    for key, gs in grants.items():
        done = sorted(acquires.get(key, []), key=_complete)
        out[key] = _KeyIndex(done, [o.complete for o in done], _HeldIndex(gs), _Ghosts.of(gs))
    return out


def _from(ops: list[Op], i: int) -> Iterator[Op]:
    """``ops[i:]`` without copying it."""
    return (ops[j] for j in range(i, len(ops)))


class _Ghosts:
    """The grants of acquires that ended indeterminate, in invoke order: each may have taken effect
    unheard, and then held its key until its latest end however honest the lock. Kept as
    ``(invoke, latest_end, client)``: a streamed judgement keeps every one of them (few: one per call a
    fault cut off), not the grants and calls behind them."""

    def __init__(self, ghosts: Iterable[tuple[int, int, str]]) -> None:
        self.ghosts = sorted(ghosts, key=lambda g: g[0])
        self.invokes = [g[0] for g in self.ghosts]
        self.longest = max((end - invoke for invoke, end, _ in self.ghosts), default=0)
        """The longest any of them can last from its invoke: the earliest that can matter at an instant."""

    @staticmethod
    def of(grants: Iterable[Grant]) -> _Ghosts:
        return _Ghosts(ghost(g) for g in grants if not g.definite)

    def excused_until(self, due: int, since: int, others_than: Collection[str], margin: float,
                      before: int | None = None) -> int:
        """``due``, the time by which the key should have been granted again since ``since``, pushed
        past every ghost grant of a client not in ``others_than`` that may still hold the key then:
        to its latest end + ``margin``. Chained: a ghost sent by the new due time pushes it again.
        Refusals (answers) are no ghosts: a lock stuck for good stays due at the bound. Ghosts sent
        from ``before`` on (after the grant being judged) explain nothing."""
        i = bisect.bisect_left(self.invokes, since - self.longest)  # earlier ones ended before ``since``
        for invoke, end, client in (self.ghosts[j] for j in range(i, len(self.ghosts))):
            if invoke > due or (before is not None and invoke >= before):
                break
            if client not in others_than and end >= since:
                due = max(due, round(end + margin))
        return due


def ghost(g: Grant) -> tuple[int, int, str]:
    """What ``_Ghosts`` keeps of an indeterminate acquire's grant."""
    return g.acquire.invoke, g.latest_end, g.client


class _HeldIndex:
    """Per client, its grants in acquire-complete order with the running maximum of their latest ends:
    whether a client may hold the lock at an instant is then one bisection."""

    def __init__(self, grants: list[Grant]) -> None:
        by_client: dict[str, list[Grant]] = {}
        for g in sorted(grants, key=lambda g: g.acquire.complete):
            by_client.setdefault(g.client, []).append(g)
        self.grants = by_client
        self.completes = {c: [g.acquire.complete for g in gs] for c, gs in by_client.items()}
        self.max_end: dict[str, list[int]] = {}
        for c, gs in by_client.items():
            ends = self.max_end[c] = []
            for g in gs:
                ends.append(max(g.latest_end, ends[-1]) if ends else g.latest_end)

    def held_at(self, client: str, at: int, since: int | None = None) -> bool:
        """Some grant of ``client`` completed by ``at`` (and not before ``since``) and may last until ``at``."""
        completes = self.completes.get(client, [])
        i = bisect.bisect_right(completes, at) - 1
        if i < 0 or self.max_end[client][i] < at:
            return False
        if since is None:
            return True
        lo = bisect.bisect_left(completes, since)  # the grants from ``since`` on, a few: one by one
        return any(self.grants[client][j].latest_end >= at for j in range(lo, i + 1))


def _prefix_max(pairs: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Keys in order and, up to each, the largest value: ``max(v for k, v in pairs if k <= x)`` by bisection."""
    pairs = sorted(pairs)
    keys = [k for k, _ in pairs]
    best: list[int] = []
    for _, v in pairs:
        best.append(max(v, best[-1]) if best else v)
    return keys, best


def _max_upto(index: tuple[list[int], list[int]], x: int) -> int | None:
    keys, best = index
    i = bisect.bisect_right(keys, x) - 1
    return best[i] if i >= 0 else None


class _Instants:
    """Fault windows of some kinds sorted by one of their instants: those whose instant falls in an
    interval are one bisection away."""

    def __init__(self, faults: list[FaultWindow], at: str) -> None:
        self.faults = sorted(faults, key=lambda f: getattr(f, at))
        self.times = [getattr(f, at) for f in self.faults]

    def within(self, lo: int, hi: int) -> list[FaultWindow]:
        return self.faults[bisect.bisect_left(self.times, lo):bisect.bisect_right(self.times, hi)]


class Gathered:
    """Liveness's answers, gathered as grants (``grant``) and granted calls (``granted``) are fed, with
    only per-fault state kept: a grant stabs the faults whose instants it covers, a call answers the
    open questions it is the first answer to."""

    def __init__(self, h: History, triggers: Collection[str], server_triggers: Collection[str],
                 leader_timed: Collection[str]) -> None:
        self._keys: dict[str, None] = {}
        holder = [f for f in h.faults if f.fault in triggers]
        self._holder_starts = _Instants(holder, "start")
        self._victims = {id(f): set(f.target.split(",")) for f in holder}
        self._held: dict[tuple[int, str], list[int]] = {}  # (fault, key): completes of victims' grants then
        self._held_keys: dict[int, list[str]] = {}
        self._open_holder: dict[str, list[FaultWindow]] = {}  # per key: faults awaiting its next acquire
        self._next: dict[tuple[int, str], Op] = {}
        # Another client's last granted acquire of a key by a fault's start: per key, the latest acquire of
        # each of its most recent clients (one more than any fault has victims), read at each start.
        self._by_start = sorted(holder, key=lambda f: f.start)
        self._snapped = 0
        self._taken: dict[tuple[int, str], int | None] = {}
        self._recent: dict[str, list[tuple[str, int]]] = {}
        self._kept = 1 + max((len(v) for v in self._victims.values()), default=0)
        self._ghosts: dict[str | None, list[tuple[int, int, str]]] = {None: []}  # per key: ``ghost``s
        self._ghost_index: dict[str | None, _Ghosts] = {}
        servers = sorted((f for f in h.faults if f.fault in server_triggers), key=lambda f: f.end)
        self._server_backs = _Instants(servers, "end")
        self._free: dict[int, int] = {}
        self._servers = servers  # by end: each answered by the first granted acquire completed after it
        self._server_i = 0
        self._after: dict[int, Op] = {}
        leaders = sorted((f for f in h.faults if f.fault in leader_timed), key=lambda f: f.start)
        self._leader_starts = _Instants(leaders, "start")
        self._leaders = leaders
        self._leader_i = 0
        self._open_leaders: list[FaultWindow] = []
        self._from: dict[int, Op] = {}
        self._left: dict[int, int] = {}

    def grant(self, g: Grant) -> None:
        """A grant, with its ``latest_end`` final, in acquire-invoke order."""
        key, end = g.key, g.latest_end
        self._keys.setdefault(key, None)
        a = g.acquire
        if not g.definite:
            kept = ghost(g)
            self._ghosts.setdefault(key, []).append(kept)
            self._ghosts[None].append(kept)
        for f in self._holder_starts.within(a.complete, end):
            if g.client in self._victims[id(f)]:
                held = self._held.get((id(f), key))
                if held is None:
                    held = self._held[id(f), key] = []
                    self._held_keys.setdefault(id(f), []).append(key)
                    self._open_holder.setdefault(key, []).append(f)
                held.append(a.complete)
        for f in self._server_backs.within(a.invoke, end):
            self._free[id(f)] = max(self._free.get(id(f), f.end), end)
        for f in self._leader_starts.within(a.complete, end):
            self._left[id(f)] = max(self._left.get(id(f), end), end)

    def granted(self, op: Op) -> None:
        """A granted acquire or renew, in complete order (ties in history order), once every grant sent by
        its complete has been fed."""
        complete = op.complete
        leaders = self._leaders
        while self._leader_i < len(leaders) and leaders[self._leader_i].start <= complete:
            self._open_leaders.append(leaders[self._leader_i])
            self._leader_i += 1
        if self._open_leaders:
            still = [f for f in self._open_leaders if f.start > op.invoke]
            for f in self._open_leaders:
                if f.start <= op.invoke:
                    self._from[id(f)] = op
            self._open_leaders = still
        if op.rec.op != "acquire":
            return
        self._snap(complete)
        recent = [(c, t) for c, t in self._recent.get(op.rec.key, ()) if c != op.rec.client]
        self._recent[op.rec.key] = [(op.rec.client, op.invoke), *recent][:self._kept]
        servers = self._servers
        while self._server_i < len(servers) and servers[self._server_i].end < complete:
            self._after[id(servers[self._server_i])] = op
            self._server_i += 1
        waiting = self._open_holder.get(op.rec.key)
        if waiting:
            still = []
            for f in waiting:
                if f.start < complete and op.rec.client not in self._victims[id(f)]:
                    self._next[id(f), op.rec.key] = op
                else:
                    still.append(f)
            self._open_holder[op.rec.key] = still

    def keys(self) -> list[str]:
        return list(self._keys)

    def _snap(self, before: int | None) -> None:
        """Who had last been granted each key by the starts of the faults before ``before`` (``None``: all)."""
        faults = self._by_start
        while self._snapped < len(faults) and (before is None or faults[self._snapped].start < before):
            f = faults[self._snapped]
            self._snapped += 1
            victims = self._victims[id(f)]
            for key in self._held_keys.get(id(f), ()):
                self._taken[id(f), key] = next((t for c, t in self._recent.get(key, ()) if c not in victims), None)

    def held_at(self, f: FaultWindow, key: str, victims: set[str]) -> bool:
        held = self._held.get((id(f), key))
        if not held:
            return False
        self._snap(None)  # the run is read: every fault's start is passed
        taken = self._taken.get((id(f), key))
        return taken is None or any(complete >= taken for complete in held)

    def ghosts_due(self, key: str | None, due: int, since: int, others_than: Collection[str], margin: float,
                   before: int | None = None) -> int:
        index = self._ghost_index.get(key)
        if index is None:
            index = self._ghost_index[key] = _Ghosts(self._ghosts.get(key, []))
        return index.excused_until(due, since, others_than, margin, before)

    def next_acquire(self, f: FaultWindow, key: str, victims: set[str]) -> Op | None:
        return self._next.get((id(f), key))

    def free_from(self, f: FaultWindow) -> int:
        return self._free.get(id(f), f.end)

    def acquire_after(self, f: FaultWindow) -> Op | None:
        return self._after.get(id(f))

    def granted_from(self, f: FaultWindow) -> Op | None:
        return self._from.get(id(f))

    def left_at(self, f: FaultWindow) -> int | None:
        return self._left.get(id(f))
