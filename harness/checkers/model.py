"""What the checkers reason about: a history loaded into grants, observations and fault windows.

Every call took effect (if at all) at an unknown instant inside its window, and an indeterminate
call possibly later still, when its request sat in a paused server's socket or a slow link. This
module turns a history into *grants* (one per acquire that may have taken effect) with the bounds
the checkers need: when a grant was surely in force, and until when it can possibly have lasted.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import gc
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockchaos.backends.base import Capabilities
from lockchaos.backends.clock import NS_PER_MS
from lockchaos.harness.faults.registry import FAULTS, named
from lockchaos.harness.run.history import (
    MAX_TTL_MS,
    FaultRecord,
    NoteRecord,
    OpRecord,
    Record,
    WriteRecord,
    read_history,
    short_repr,
)
from lockchaos.harness.run.lateness import LATE_NOTE, LateWindow, late_window
from lockchaos.harness.run.lateness import WINDOW_NS as LATE_WINDOW_NS
from lockchaos.harness.run.promotions import PROMOTION_NOTE, PromotionWindow, promotion_window

# What each fault means for lease timing, from the fault registry (``harness/faults/registry.py``).
LEADER_FAULTS = named(lambda t: t.failover)
"""Cluster faults that make another member the leader (or primary)."""
LINK_FAULTS = frozenset(name for name, fault in FAULTS.items() if fault.target == "link")
"""Faults of one client's link to the server (the proxy), not of the server: never a ``server_faults`` answer."""
RESTARTS = named(lambda t: t.restarts_server)
"""The server is killed and restarted: durable, it prolongs; non-durable, it forgets."""
FREEZES = named(lambda t: t.freezes_server)
"""The server freezes: requests queue and apply on resume; what was in force is prolonged."""
EARLY_ENDERS = named(lambda t: t.ends_leases_early)
"""Leases may end early whatever the durability (a clock jump)."""
DELAYS = named(lambda t: t.delays_requests)
"""A request may take effect up to ``one_way_ms`` after its reply."""
DELAYING = named(lambda t: t.freezes_server or t.delays_requests or t.delays_failover)
KILLS_HOLDER = named(lambda t: t.kills_holder)
FREEZES_HOLDER = named(lambda t: t.freezes_holder)
EPSILON_NS = 5 * NS_PER_MS
"""Scheduling slack between the client's clock reading and the server acting (same machine)."""


@dataclass(frozen=True, slots=True)
class Op:
    """One call and its line; its times are copied out of the record once, since the checkers sort
    and compare by them millions of times in a long history."""

    line: int
    rec: OpRecord
    invoke: int = field(init=False, compare=False, repr=False)
    complete: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "invoke", self.rec.invoke_ns)
        object.__setattr__(self, "complete", self.rec.complete_ns)


_put_op = tuple(Op.__dict__[name].__set__ for name in ("line", "rec", "invoke", "complete"))


def new_op(line: int, rec: OpRecord) -> Op:
    """``Op(line, rec)`` by its slots: a long history makes one per call, and ``__init__`` with
    ``__post_init__`` goes through ``object.__setattr__`` four times."""
    op = object.__new__(Op)
    put_line, put_rec, put_invoke, put_complete = _put_op
    put_line(op, line)
    put_rec(op, rec)
    put_invoke(op, rec.invoke_ns)
    put_complete(op, rec.complete_ns)
    return op


@dataclass(frozen=True, slots=True)
class FaultWindow:
    fault: str
    target: str
    start: int
    end: int
    detail: dict[str, Any]
    lines: tuple[int, ...]


@dataclass(eq=False, slots=True)
class Grant:
    """One acquire that may have taken effect, and everything its owner did with it."""

    acquire: Op
    owner: str  # the owner id given to the lock
    client: str  # the worker that holds it (two workers may share an owner id)
    token: int | None  # None: an indeterminate acquire whose token nobody saw, or a tokenless lock
    ttl_ms: int
    effect_horizon: int  # the latest instant the acquire can have taken effect
    renews: list[Op] = field(default_factory=list)
    releases: list[Op] = field(default_factory=list)
    latest_end: int = 0  # filled by History.bound: no later than this can it be in force

    @property
    def key(self) -> str:
        """The lock key: every checker judges grants per key (a stress run holds many)."""
        return self.acquire.rec.key

    @property
    def definite(self) -> bool:
        return self.acquire.rec.outcome == "ok"


@dataclass
class History:
    meta: dict[str, Any]
    caps: Capabilities
    ttl_ms: int
    ops: list[Op]
    writes: list[tuple[int, WriteRecord]]
    faults: list[FaultWindow]
    grants: list[Grant]
    end_ns: int
    truncated: bool
    client_timeouts: dict[str, int | None] = field(default_factory=dict)
    """Each worker client's declared call timeout (``timeout_ms``), when the client tells it."""
    stopped_ns: int = 0
    """When the workers were stopped (quiesce or interrupt): nothing they did not do by then is late."""
    open_errors: list[tuple[int, NoteRecord]] = field(default_factory=list)
    """Opening a client raised an exception the factory did not map (line, note)."""
    late: list[LateWindow] = field(default_factory=list)
    """Where the run's machine scheduled late (``lateness.py``), in time order."""
    promotions: list[PromotionWindow] = field(default_factory=list)
    """When a Raft cluster of the harness's changed leader on its own (``promotions.py``), in time order."""

    def lateness(self, start: int, end: int) -> int:
        """The worst scheduling lateness measured in a window overlapping [start, end]: 0 where the
        machine kept time (and in virtual time)."""
        late = self.late
        i = bisect.bisect_left(self._late_ends, start)
        # In end order, a window that overlaps ends by ``end`` + the longest window: the two probes'
        # windows interleave, and a server read that hung makes one as long as the hang.
        last = end + self._longest_late
        worst = 0
        while i < len(late) and late[i].end_ns <= last:
            if late[i].start_ns <= end:
                worst = max(worst, late[i].late_ns)
            i += 1
        return worst

    @functools.cached_property
    def _late_ends(self) -> list[int]:
        return [w.end_ns for w in self.late]

    @functools.cached_property
    def _longest_late(self) -> int:
        return max((w.end_ns - w.start_ns for w in self.late), default=0)

    def server_faults(self, *names: str) -> list[FaultWindow]:
        """The server's (and cluster's) faults of these kinds in start order; never a link's."""
        return list(self._faults_named(tuple(n for n in names if n not in LINK_FAULTS)))

    def link_faults(self, *names: str) -> list[FaultWindow]:
        """The client links' faults of these kinds (the proxy's: latency, partition, ...) in start order."""
        return list(self._faults_named(tuple(n for n in names if n in LINK_FAULTS)))

    @functools.cached_property
    def ops_by_invoke(self) -> list[Op]:
        """Every call in invoke order (stable: ties keep history order), sorted once for every checker."""
        return sorted(self.ops, key=_invoke)

    @functools.cached_property
    def invokes(self) -> list[int]:
        """``ops_by_invoke``'s invoke times: the calls from an instant on are one bisection away."""
        return [op.invoke for op in self.ops_by_invoke]

    def _faults_named(self, names: tuple[str, ...]) -> tuple[FaultWindow, ...]:
        """The faults of these kinds in start order, filtered once per kinds (not once per grant)."""
        cache = self._named_cache
        if names not in cache:
            cache[names] = tuple(f for f in self.faults if f.fault in names)
        return cache[names]

    @functools.cached_property
    def _named_cache(self) -> dict[tuple[str, ...], tuple[FaultWindow, ...]]:
        return {}

    @functools.cached_property
    def _delaying_index(self) -> FaultIndex:
        return FaultIndex(self._delaying_faults)

    @functools.cached_property
    def _prolonger_index(self) -> FaultIndex:
        """Faults that prolong whatever was in force when they began (see ``_latest_expiry``)."""
        restarts = self._faults_named(RESTARTS) if self.caps.durable else ()
        # A leader change the cluster made on its own re-arms leases as a declared leader fault does.
        elected = [FaultWindow(PROMOTION_NOTE, "cluster", p.start_ns, p.end_ns, {"extend_ns": p.extend_ns}, ())
                   for p in self.promotions]
        merged = sorted([*restarts, *self._faults_named(FREEZES), *self.failovers, *elected], key=lambda f: f.start)
        return FaultIndex(merged)

    @functools.cached_property
    def _lease_ending_starts(self) -> list[int]:
        """Starts of the faults that can end a lease early, in order (see ``earliest_end``)."""
        return [f.start for f in self.faults
                if f.fault in EARLY_ENDERS or (f.fault in RESTARTS and not self.caps.durable)]

    @functools.cached_property
    def _lease_ending_index(self) -> FaultIndex:
        """The same faults as windows: one under way when an acquire is sent may strike right after it."""
        return FaultIndex(f for f in self.faults
                          if f.fault in EARLY_ENDERS or (f.fault in RESTARTS and not self.caps.durable))

    @functools.cached_property
    def _restart_end_suffix_min(self) -> tuple[list[int], list[int]]:
        """Server restarts' starts in order and, from each on, the earliest end among it and the later ones."""
        restarts = self._faults_named(RESTARTS)
        starts = [f.start for f in restarts]
        mins = [f.end for f in restarts]
        for i in range(len(mins) - 2, -1, -1):
            mins[i] = min(mins[i], mins[i + 1])
        return starts, mins

    @functools.cached_property
    def _holder_faults(self) -> dict[str, list[FaultWindow]]:
        """Per worker, the faults that stop its process (crash, pause), in start order."""
        out: dict[str, list[FaultWindow]] = {}
        for f in self.faults:
            if f.fault in KILLS_HOLDER or f.fault in FREEZES_HOLDER:
                for target in f.target.split(","):
                    out.setdefault(target, []).append(f)
        return out

    @functools.cached_property
    def _delaying_faults(self) -> list[FaultWindow]:
        return [f for f in self.faults if f.fault in DELAYING]

    @functools.cached_property
    def failovers(self) -> list[FaultWindow]:
        """Leader faults of a replicated service: each may hand the lock service to another member."""
        if self.caps.replication == "none":
            return []
        return [f for f in self.faults if f.fault in LEADER_FAULTS]

    def promotion_end(self, f: FaultWindow) -> int:
        """Until when a failover may still change who serves: the fault, then the declared failover
        time again, since the old leader's return (a restart, a resume) is a change the cluster must
        settle too (a Sentinel that has not yet heard of the promotion still names the old primary)."""
        return f.end + self.caps.failover_ms * NS_PER_MS

    @functools.cached_property
    def lossy_failovers(self) -> list[FaultWindow]:
        """Failovers that may lose granted locks: the declared hazard of asynchronous replication."""
        return self.failovers if self.caps.replication == "async" else []

    def lost_in_failover(self, at: int, since: int) -> bool:
        """Whether a lossy failover window overlaps [since, at]: a lock lost there is the declared hazard."""
        return any(f.start <= at and since <= self.promotion_end(f) for f in self.lossy_failovers)

    def horizon(self, op: Op) -> int:
        """Until when an operation's request may still take effect at the server."""
        if op.rec.outcome != "indeterminate":
            return op.complete + EPSILON_NS
        # Its request may wait in a socket until the server is scheduled: as late as the machine ran then.
        h = op.complete + self.lateness(op.invoke, op.complete + LATE_WINDOW_NS)
        for f in self._delaying_index.overlapping(op.invoke, op.complete):
            if f.fault in FREEZES:
                h = max(h, f.end)  # queued in the server's socket, applied on resume
            elif f.fault in DELAYS:
                h = max(h, op.complete + int(f.detail.get("one_way_ms", 0)) * NS_PER_MS)
        return h + EPSILON_NS


def _window_end(w: LateWindow) -> int:
    return w.end_ns


def _invoke(op: Op) -> int:
    return op.invoke


class FaultIndex:
    """Fault windows sorted by start, with the running maximum of their ends: the windows overlapping
    an interval are found by bisecting on the starts and walking back only while an end can still reach it."""

    def __init__(self, faults: Iterable[FaultWindow]) -> None:
        self.faults = sorted(faults, key=lambda f: f.start)
        self.starts = [f.start for f in self.faults]
        self.max_end: list[int] = []
        for f in self.faults:
            self.max_end.append(max(f.end, self.max_end[-1]) if self.max_end else f.end)

    def overlapping(self, start: int, end: int) -> list[FaultWindow]:
        """Windows with ``f.start <= end and f.end >= start``, in no particular order."""
        out = []
        i = bisect.bisect_right(self.starts, end) - 1
        while i >= 0 and self.max_end[i] >= start:
            if self.faults[i].end >= start:
                out.append(self.faults[i])
            i -= 1
        return out


@dataclass
class Notes:
    """Run-level facts from note records, besides the meta."""

    timeouts: dict[str, int | None] = field(default_factory=dict)
    stopped_ns: int = 0
    open_errors: list[tuple[int, NoteRecord]] = field(default_factory=list)
    late: list[LateWindow] = field(default_factory=list)
    promotions: list[PromotionWindow] = field(default_factory=list)
    unread_end_ns: int = 0
    """The latest time among records read past without being loaded (``stream.py``): the run's end counts them."""


def load_records(records: Iterable[tuple[int, Record]],
          notes: Notes) -> tuple[dict[str, Any], list[Op], list[tuple[int, WriteRecord]],
                                                    list[FaultWindow], int, bool]:
    meta: dict[str, Any] = {}
    ops: list[Op] = []
    writes: list[tuple[int, WriteRecord]] = []
    open_faults: dict[tuple[str, str], tuple[int, FaultRecord]] = {}
    faults: list[FaultWindow] = []
    end_ns = 0
    ended = False
    for line, rec in records:
        kind = type(rec)
        if kind is OpRecord:
            ops.append(new_op(line, rec))  # type: ignore[arg-type]
            if rec.complete_ns > end_ns:  # type: ignore[union-attr]
                end_ns = rec.complete_ns  # type: ignore[union-attr]
        elif kind is WriteRecord:
            writes.append((line, rec))  # type: ignore[arg-type]
            if rec.time_ns > end_ns:  # type: ignore[union-attr]
                end_ns = rec.time_ns  # type: ignore[union-attr]
        elif isinstance(rec, FaultRecord):
            end_ns = max(end_ns, rec.time_ns)
            key = (rec.fault, rec.target)
            if rec.phase == "start":
                open_faults[key] = (line, rec)
            elif key in open_faults:
                sline, start = open_faults.pop(key)
                faults.append(FaultWindow(rec.fault, rec.target, start.time_ns, rec.time_ns,
                                          {**start.detail, **rec.detail}, (sline, line)))
        elif isinstance(rec, NoteRecord):
            if rec.kind == "meta":
                if meta:
                    raise ValueError(f"line {line}: a second meta record (a history holds one run)")
                meta = rec.data
            elif rec.kind == "client":
                why = _strings_malformed(rec.data, "client")
                if why is not None:
                    raise ValueError(f"line {line}: a client note {why}")
                notes.timeouts[str(rec.data.get("client"))] = rec.data.get("timeout_ms")
            elif rec.kind == "open-error":
                why = _strings_malformed(rec.data, "client", "error", "error_type")
                if why is not None:
                    raise ValueError(f"line {line}: an open-error note {why}")
                notes.open_errors.append((line, rec))
            elif rec.kind in ("quiesce", "interrupted") and not notes.stopped_ns:
                notes.stopped_ns = rec.time_ns - _drained_ns(rec, line)
            elif rec.kind == LATE_NOTE:
                window = late_window(rec.time_ns, rec.data)
                if window is not None:
                    notes.late.append(window)
            elif rec.kind == PROMOTION_NOTE:
                promoted = promotion_window(rec.time_ns, rec.data)
                if promoted is not None:
                    notes.promotions.append(promoted)
            elif rec.kind == "end":
                ended = True
            elif rec.kind == "residue":  # what the server held after the run: the residue checker's
                why = _residue_malformed(rec.data)
                if why is not None:
                    raise ValueError(f"line {line}: a residue note {why}")
                meta = {**meta, "residue": {**rec.data, "time_ns": rec.time_ns}}
            end_ns = max(end_ns, rec.time_ns)
    end_ns = max(end_ns, notes.unread_end_ns)
    for sline, start in open_faults.values():  # a fault still open when the run ended or was killed
        faults.append(FaultWindow(start.fault, start.target, start.time_ns, end_ns, start.detail, (sline,)))
    faults.sort(key=lambda f: f.start)
    return meta, ops, writes, faults, end_ns, not ended


def load_history(source: Path | Iterable[Record]) -> History:
    if isinstance(source, Path):
        numbered: Iterable[tuple[int, Record]] = enumerate(read_history(source), start=1)
    else:
        numbered = enumerate(source, start=1)
    notes = Notes()
    # Loading allocates a few objects per event and frees none of them: the cycle collector's passes
    # over the growing heap cost a third of the load and find nothing (records hold no cycles).
    collecting = gc.isenabled()
    gc.disable()
    try:
        meta, ops, writes, faults, end_ns, truncated = load_records(numbered, notes)
    finally:
        if collecting:
            gc.enable()
    return history_of(meta, ops, writes, faults, end_ns, truncated, notes)


_CAPABILITY_TYPES: dict[str, type[Any]] = {f.name: type(f.default) for f in dataclasses.fields(Capabilities)}
PLAN_RATES = ("retry_every", "renew_every")
"""The worker plan's intervals the checkers compute with, in TTLs."""
MAX_PLAN_TTLS = 1e6


def _meta_malformed(meta: dict[str, Any]) -> str | None:
    """What in the meta record no run writes, or None. The checkers compute with the TTL, the declared
    capabilities and the plan's intervals: a string there, or a number that overflows a float, would
    raise deep inside one of them instead of saying what is wrong with the file."""
    ttl = meta.get("ttl_ms")
    if type(ttl) is not int or not 1 <= ttl <= MAX_TTL_MS:
        return f"ttl_ms must be an integer from 1 to {MAX_TTL_MS}, got {short_repr(ttl)}"
    caps = meta.get("capabilities")
    if type(caps) is not dict:
        return f"capabilities must be an object, got {short_repr(caps)}"
    for name, value in caps.items():
        kind = _CAPABILITY_TYPES.get(name)
        if kind is None:
            return f"capabilities hold an unknown field {short_repr(name)}"
        if type(value) is not kind or (kind is int and not 0 <= value <= MAX_TTL_MS):
            wanted = f"an integer from 0 to {MAX_TTL_MS}" if kind is int else f"a {kind.__name__}"
            return f"capability {name} must be {wanted}, got {short_repr(value)}"
    for name in ("backend", "scenario", "key"):  # quoted by the checkers and the report
        if type(meta.get(name, "")) is not str:
            return f"{name} must be a string, got {short_repr(meta[name])}"
    if type(meta.get("seed", 0)) is not int:
        return f"seed must be an integer, got {short_repr(meta['seed'])}"
    plan = meta.get("plan", {})
    if type(plan) is not dict:
        return f"plan must be an object, got {short_repr(plan)}"
    for name in PLAN_RATES:
        value = plan.get(name, 0)
        if type(value) not in (int, float) or not 0 <= value <= MAX_PLAN_TTLS:
            return f"plan's {name} must be a number from 0 to {MAX_PLAN_TTLS:g} TTLs, got {short_repr(value)}"
    return None


def _drained_ns(rec: NoteRecord, line: int) -> int:
    """A stop note's ``drained_ms`` (how long the workers took to stop once told) in ns, 0 if absent:
    the workers stopped asking when they were told, not when the last one had finished."""
    drained = rec.data.get("drained_ms")
    if drained is None:
        return 0
    if type(drained) not in (int, float) or not 0 <= drained * NS_PER_MS <= rec.time_ns:
        raise ValueError(f"line {line}: a {rec.kind} note's drained_ms must be a number of ms between 0 and "
                         f"its time, got {short_repr(drained)}")
    return round(float(drained) * NS_PER_MS)


def _strings_malformed(data: dict[str, Any], *names: str) -> str | None:
    """Which of a note's fields that findings quote is neither a string nor absent (a value nested a
    thousand deep would raise RecursionError when quoted), or None."""
    for name in names:
        value = data.get(name)
        if value is not None and type(value) is not str:
            return f"has a {name} that is no string: {short_repr(value)}"
    return None


def _residue_malformed(data: dict[str, Any]) -> str | None:
    """What in a residue note's two looks at the server no run writes (``servers/residue.py``), or None."""
    for look in ("at_stop", "at_end"):
        snap = data.get(look)
        if snap is None:
            continue
        if type(snap) is not dict:
            return f"{look} must be an object or null, got {short_repr(snap)}"
        keys, leases = snap.get("keys", []), snap.get("leases")
        if type(keys) is not list or not all(type(k) is dict and type(k.get("key")) is str
                                             and (k.get("ttl_ms") is None or type(k.get("ttl_ms")) is int)
                                             for k in keys):
            return f"{look}'s keys must be a list of {{key, ttl_ms}} objects, got {short_repr(keys)}"
        if leases is not None and (type(leases) is not list or not all(type(x) is dict and type(x.get("keys")) is list
                                                                          for x in leases)):
            return f"{look}'s leases must be a list of {{keys}} objects or null, got {short_repr(leases)}"
    return None


def history_of(meta: dict[str, Any], ops: list[Op], writes: list[tuple[int, WriteRecord]], faults: list[FaultWindow],
               end_ns: int, truncated: bool, notes: Notes) -> History:
    """The history of what was loaded, its grants made and bounded."""
    if not meta:
        raise ValueError("history has no meta record: not a lockchaos history")
    why = _meta_malformed(meta)
    if why is not None:
        raise ValueError(f"the meta record's {why}")
    caps = Capabilities(**meta["capabilities"])
    h = History(meta, caps, int(meta["ttl_ms"]), ops, writes, faults, [], end_ns, truncated, notes.timeouts,
                notes.stopped_ns or end_ns, notes.open_errors, sorted(notes.late, key=_window_end),
                sorted(notes.promotions, key=lambda p: p.end_ns))
    h.grants = _grants(h)
    _bound(h)
    return h


def _grants(h: History) -> list[Grant]:
    """One grant per acquire that may have taken effect; renews and releases go to their owner's latest."""
    builder = GrantBuilder(h)
    for op in h.ops_by_invoke:
        builder.op(op)
    return builder.grants


class GrantBuilder:
    """Grants made from calls fed in invoke order (ties in history order): an acquire that may have taken
    effect opens one, a renew or release joins its client's latest grant of the key. Whoever feeds it
    may take ``grants`` away as it goes (``stream.py`` does): ``current`` alone is needed to go on.

    Clients sharing an owner id (``duplicate-owner``): a lock knows owners, not clients, so a late renew
    can land on the other client's fresh grant of the same owner, and its answer's token shows it did.
    Such a renew joins that grant, and its client's later calls too while that grant is its own
    client's latest (seen under load: joined to its own dead grant, the renew prolonged that one, "a
    re-entrant grant", and the client's release, which deleted the other's lease, left that one "in
    force" when the next client got the lock, "a double grant"). Fed in invoke order, the renew may
    come before the grant it landed on: it waits with its own grant until that grant is made."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.grants: list[Grant] = []
        self.current: dict[tuple[str, str], Grant] = {}  # per client and key, its latest grant
        self.landed: dict[tuple[str, str], Grant] = {}  # per client and key, another's grant it acts on
        self.by_token: dict[tuple[str, str, int], Grant] = {}  # current grants by key, owner and token
        # By key, owner and token: renews answered with a token no grant of theirs has, and the grant
        # each joined meanwhile, until another client's grant with that token is made.
        self.waiting: dict[tuple[str, str, int], list[tuple[Op, Grant]]] = {}
        self.waiting_of: dict[tuple[str, str], list[tuple[str, str, int]]] = {}  # per client and key

    def op(self, op: Op) -> Grant | None:
        """The grant ``op`` opens, if it opens one (the client's previous grant of the key is then complete)."""
        h, rec = self.h, op.rec
        if rec.op == "acquire" and rec.outcome in ("ok", "indeterminate"):
            lease = rec.lease
            # A lock declaring no fencing tokens is never judged by one, even if it hands out numbers.
            token = (None if lease is None or lease.get("token") is None or not h.caps.fencing_tokens
                     else int(lease["token"]))
            ttl = int(lease["ttl_ms"]) if lease else h.caps.applied_ttl(int(rec.args.get("ttl_ms", h.ttl_ms)))
            g = Grant(op, str(rec.args.get("owner", rec.client)), rec.client, token, ttl, h.horizon(op))
            self.grants.append(g)
            self._moved_on(rec.client, rec.key)
            self.current[rec.client, rec.key] = g
            if token is not None:
                self.by_token[rec.key, g.owner, token] = g
                self._take_waiting(g, token)
            return g
        if rec.op == "renew" or rec.op == "release":
            g_of = self._landed(op) or self.current.get((rec.client, rec.key))
            if g_of is not None:
                (g_of.renews if rec.op == "renew" else g_of.releases).append(op)
        return None

    def _moved_on(self, client: str, key: str) -> None:
        """``client`` makes a new grant of ``key``: its previous one takes no more calls, nor moves."""
        before = self.current.get((client, key))
        if before is not None and before.token is not None:
            stale = (key, before.owner, before.token)
            if self.by_token.get(stale) is before:
                del self.by_token[stale]
        self.landed.pop((client, key), None)
        for wk in self.waiting_of.pop((client, key), ()):
            waits = [(op, g) for op, g in self.waiting.get(wk, ()) if op.rec.client != client]
            if waits:
                self.waiting[wk] = waits
            else:
                self.waiting.pop(wk, None)

    def _take_waiting(self, g: Grant, token: int) -> None:
        """The renews of another client of the same owner answered with ``g``'s token before ``g`` was
        fed move to ``g``, and so do their clients' later calls."""
        waits = self.waiting.pop((g.key, g.owner, token), [])
        for op, joined in waits:
            if op.rec.client == g.client or op not in joined.renews:
                continue
            joined.renews.remove(op)
            g.renews.append(op)
            self.landed[op.rec.client, g.key] = g

    def _landed(self, op: Op) -> Grant | None:
        """The grant of another client sharing this owner id that this renew or release acts on, if one
        showed it (see the class)."""
        rec = op.rec
        where = (rec.client, rec.key)
        token = rec.lease.get("token") if rec.op == "renew" and rec.outcome == "ok" and rec.lease else None
        if type(token) is int and self.h.caps.fencing_tokens:
            own = self.landed.get(where) or self.current.get(where)
            if own is not None and own.token != token:
                owner = str(rec.args.get("owner", rec.client))
                other = self.by_token.get((rec.key, owner, token))
                if (other is not None and other.client != rec.client
                        and self.current.get((other.client, rec.key)) is other):
                    self.landed[where] = other
                    return other
                if other is None and (own.token is None or token > own.token):
                    wk = (rec.key, owner, token)  # perhaps a grant not fed yet: this renew waits for it
                    self.waiting.setdefault(wk, []).append((op, own))
                    self.waiting_of.setdefault(where, []).append(wk)
        other = self.landed.get(where)
        if other is not None and self.current.get((other.client, rec.key)) is not other:
            del self.landed[where]  # its client has moved on: that grant takes no more calls
            return None
        return other


def _bound(h: History) -> None:
    """For each grant: until when it can possibly have been in force, and when it was proven over."""
    for g in h.grants:
        bound_grant(h, g)


def bound_grant(h: History, g: Grant) -> None:
    """``g.latest_end``, once every call of its client on its key up to its next grant is known."""
    lag = h.caps.expiry_lag_ms * NS_PER_MS
    latest = _latest_expiry(h, g, lag)
    proofs = [r.complete for r in g.releases if r.rec.outcome == "ok"]
    proofs += [r.complete for r in g.renews if r.rec.outcome == "fail" and r.invoke >= g.effect_horizon]
    if not h.caps.durable:  # the earliest end among the restarts that began after the grant took effect
        restart_starts, restart_min_end = h._restart_end_suffix_min
        i = bisect.bisect_left(restart_starts, g.effect_horizon)
        if i < len(restart_min_end):
            proofs.append(restart_min_end[i])
    g.latest_end = min([latest, *proofs])


def _latest_expiry(h: History, g: Grant, lag: int) -> int:
    """The latest instant ``g`` can still be in force, by the extensions that can have reached it.

    A renew extends the lease only if it can have arrived while the lease was still in force, and
    a durable server's restart or a pause prolongs whatever was in force when it began: the least
    fixed point of these extensions (each only raises ``latest``, and whether it applies only gets
    truer as ``latest`` grows, so the order they are taken in does not matter). Renews in invoke
    order and faults in start order are each taken once, by two cursors that advance while they reach.
    """
    latest = h.horizon(g.acquire) + g.ttl_ms * NS_PER_MS + lag + EPSILON_NS
    if h.caps.renews_in_background:  # its client's own thread renews it, unrecorded, until it stops
        latest = max(latest, _renewer_stops(h, g) + g.ttl_ms * NS_PER_MS + lag + EPSILON_NS)
    pending = [r for r in g.renews if r.rec.outcome != "fail"]  # in invoke order, as ``_grants`` adds them
    # A new leader re-arms every lease it finds (etcd's lessor on promotion), so a failover may
    # prolong a grant by a TTL from when it completes.
    index = h._prolonger_index
    invoke = g.acquire.invoke

    def extended(f: FaultWindow, latest: int) -> int:
        if f.fault == PROMOTION_NOTE:  # re-armed to a TTL and an election timeout from the promotion
            return max(latest, f.end + g.ttl_ms * NS_PER_MS + int(f.detail["extend_ns"]) + lag + EPSILON_NS)
        extra = g.ttl_ms * NS_PER_MS if f.fault in RESTARTS or f.fault in LEADER_FAULTS else 0
        end = h.promotion_end(f) if f.fault in LEADER_FAULTS else f.end
        return max(latest, end + extra + lag + EPSILON_NS)

    # Faults that began before the acquire reach it if they lasted until it (they began before ``latest``).
    for f in index.overlapping(invoke, invoke - 1):
        latest = extended(f, latest)
    r_i, f_i = 0, bisect.bisect_left(index.starts, invoke)  # from here on they began at or after the acquire
    while True:
        if r_i < len(pending) and pending[r_i].invoke <= latest:
            r = pending[r_i]
            latest = max(latest, h.horizon(r) + _ttl(r, g) * NS_PER_MS + lag + EPSILON_NS)
            r_i += 1
        elif f_i < len(index.faults) and index.starts[f_i] <= latest:
            if index.faults[f_i].end >= invoke:
                latest = extended(index.faults[f_i], latest)
            f_i += 1
        else:
            return latest


def _renewer_stops(h: History, g: Grant) -> int:
    """The latest instant the background renewal of ``g``'s client may have renewed it.

    It renews until released (a proof, counted apart), until its process is killed, or until its
    process is frozen (SIGSTOP) for longer than the lease lasts: a shorter freeze resumes renewing
    a lease still in force. A thread worker's pause freezes only its loop, not the library's
    thread, so only SIGSTOP pauses count. Otherwise it renews until the run's end.
    """
    stops = [h.end_ns]
    outlasts = g.ttl_ms * NS_PER_MS + h.caps.expiry_lag_ms * NS_PER_MS
    for f in h._holder_faults.get(g.client, ()):
        if f.end < g.acquire.invoke:
            continue
        frozen = f.fault in FREEZES_HOLDER and f.detail.get("signal") == "SIGSTOP" and f.end - f.start > outlasts
        if f.fault in KILLS_HOLDER or frozen:
            stops.append(max(f.start, g.acquire.invoke))
    return min(stops)


def _ttl(op: Op, g: Grant) -> int:
    lease = op.rec.lease
    if lease is not None:
        return int(lease["ttl_ms"])
    return max(g.ttl_ms, int(op.rec.args.get("ttl_ms", g.ttl_ms)))


def extended_end(g: Grant, at: int) -> int:
    """Until when ``g`` surely lasts by its acquire and the ok renews that completed by ``at``, timed
    from their invokes (the earliest instant each can have taken effect), before anything cut it short."""
    end = g.acquire.invoke + g.ttl_ms * NS_PER_MS
    for r in g.renews:
        if r.rec.outcome == "ok" and r.complete <= at:
            end = max(end, r.invoke + _ttl(r, g) * NS_PER_MS)
    return end


def earliest_end(h: History, g: Grant, at: int, *, lossy_failover: bool = True, hindsight: bool = False) -> int:
    """The earliest instant ``g`` may end, judged from what had surely happened by ``at``.

    Only ok calls that completed by ``at`` count as extensions: their effect is certain by then.
    With asynchronous replication a failover may lose the grant at any instant of its window
    (``lossy_failover=False`` judges as the reference does, which never loses one).

    ``hindsight`` counts every ok renew of ``g``, however late it completed: a renew succeeds only on a
    lease still in force, so one that took effect at any instant of its call proves the lease held
    without a break from its grant until then, and in force until the renew's invoke + TTL at least.
    Sound only when no other client uses ``g``'s owner id (its renew could succeed on their lease).
    """
    cut = extended_end(g, END_OF_TIME if hindsight else at) - EPSILON_NS
    for r in g.releases:  # a release that may have happened ends it as early as its invoke
        if r.rec.outcome != "fail":
            cut = min(cut, r.invoke)
    ending = h._lease_ending_starts  # faults that can end a lease early: the first one from the acquire on
    i = bisect.bisect_left(ending, g.acquire.invoke)
    if i < len(ending):
        cut = min(cut, ending[i])
    # One that began before the acquire but whose window reaches it (the jump or the kill lands at some
    # instant between its start and end records) may end the lease at once: seen at stress rates.
    if h._lease_ending_index.overlapping(g.acquire.invoke, g.acquire.invoke):
        cut = min(cut, g.acquire.invoke)
    if lossy_failover:
        for f in h.lossy_failovers:
            if g.acquire.invoke <= h.promotion_end(f):
                cut = min(cut, max(f.start, g.acquire.invoke))
    return cut


def surely_held_throughout(h: History, g: Grant, start: int, end: int, *, lossy_failover: bool = True,
                           hindsight: bool = False) -> bool:
    """``g`` was in force at every instant of [start, end], whatever the timing."""
    return g.definite and g.acquire.complete <= start and earliest_end(
        h, g, start, lossy_failover=lossy_failover, hindsight=hindsight) > end


END_OF_TIME = 1 << 62
"""Later than any instant of a run: what ``hindsight`` judges from."""


def possibly_held_within(g: Grant, start: int, end: int) -> bool:
    """``g`` may have been in force at some instant of [start, end]."""
    return g.acquire.invoke <= end and g.latest_end >= start
