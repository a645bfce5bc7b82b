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
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Protocol

from lockchaos.harness.checkers.model import FaultWindow, Grant, History, Op


class Lookups(Protocol):
    def keys(self) -> list[str]:
        """Every key ever granted (a lock nobody held has no holder to fail over from), in first-grant order."""

    def held_at(self, f: FaultWindow, key: str, victims: set[str]) -> bool:
        """Some victim of ``f`` had a grant of ``key`` completed by ``f.start`` that may last until then."""

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
        return any(self.by_key[key].holding.held_at(v, f.start) for v in victims)

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

    @property
    def _ends_by_invoke(self) -> tuple[list[int], list[int]]:
        if not hasattr(self, "_by_invoke"):
            self._by_invoke = _prefix_max([(g.acquire.invoke, g.latest_end) for g in self.h.grants])
        return self._by_invoke

    @property
    def _ends_by_complete(self) -> tuple[list[int], list[int]]:
        if not hasattr(self, "_by_complete"):
            self._by_complete = _prefix_max([(g.acquire.complete, g.latest_end) for g in self.h.grants])
        return self._by_complete

    @property
    def _acquire_completes(self) -> list[int]:
        if not hasattr(self, "_completes"):
            self._completes = [o.complete for o in self.acquires]
        return self._completes

    @property
    def _granted(self) -> tuple[list[Op], list[int], list[int]]:
        """Granted acquires and renews in complete order; their invokes in order, and from each on the
        smallest complete-order position: the first grant (in complete order) sent at or after an instant."""
        if not hasattr(self, "_granted_index"):
            grants = sorted((o for o in self.h.ops if _granted(o, "acquire", "renew")), key=_complete)
            by_invoke = sorted(range(len(grants)), key=lambda i: grants[i].invoke)
            invokes = [grants[i].invoke for i in by_invoke]
            first_pos = list(by_invoke)
            for k in range(len(first_pos) - 2, -1, -1):
                first_pos[k] = min(first_pos[k], first_pos[k + 1])
            self._granted_index = (grants, invokes, first_pos)
        return self._granted_index


@dataclass(frozen=True, slots=True)
class _KeyIndex:
    """One key's calls as the holder-failover judgement looks them up: its granted acquires in complete
    order, and who may hold it when."""

    acquires: list[Op]
    acquire_completes: list[int]
    holding: _HeldIndex


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
        out[key] = _KeyIndex(done, [o.complete for o in done], _HeldIndex(gs))
    return out


def _from(ops: list[Op], i: int) -> Iterator[Op]:
    """``ops[i:]`` without copying it."""
    return (ops[j] for j in range(i, len(ops)))


class _HeldIndex:
    """Per client, its grants in acquire-complete order with the running maximum of their latest ends:
    whether a client may hold the lock at an instant is then one bisection."""

    def __init__(self, grants: list[Grant]) -> None:
        by_client: dict[str, list[Grant]] = {}
        for g in sorted(grants, key=lambda g: g.acquire.complete):
            by_client.setdefault(g.client, []).append(g)
        self.completes = {c: [g.acquire.complete for g in gs] for c, gs in by_client.items()}
        self.max_end: dict[str, list[int]] = {}
        for c, gs in by_client.items():
            ends = self.max_end[c] = []
            for g in gs:
                ends.append(max(g.latest_end, ends[-1]) if ends else g.latest_end)

    def held_at(self, client: str, at: int) -> bool:
        """Some grant of ``client`` completed by ``at`` and may last until ``at``."""
        i = bisect.bisect_right(self.completes.get(client, []), at) - 1
        return i >= 0 and self.max_end[client][i] >= at


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
        self._held: dict[tuple[int, str], bool] = {}  # (fault, key): a victim held it at the fault
        self._open_holder: dict[str, list[FaultWindow]] = {}  # per key: faults awaiting its next acquire
        self._next: dict[tuple[int, str], Op] = {}
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
        for f in self._holder_starts.within(a.complete, end):
            if g.client in self._victims[id(f)] and (id(f), key) not in self._held:
                self._held[id(f), key] = True
                self._open_holder.setdefault(key, []).append(f)
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

    def held_at(self, f: FaultWindow, key: str, victims: set[str]) -> bool:
        return (id(f), key) in self._held

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
