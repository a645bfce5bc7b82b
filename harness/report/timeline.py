"""What the timeline shows, in seconds since the run's start, extracted from the checkers' model.

One lane per worker (``w3#1`` and its restarted incarnation ``w3#2`` share lane ``w3``). In a lane:
the spans when the service granted the worker the lock (acquire completion until the first proof it
ended: a successful release, a failed renew, or else the latest instant the lease can have been in
force, clipped to the run's end), the spans when the worker *believed* it held it (acquire completion
to its last write, renew or release on that lease), and its writes to the fenced register. Across the
lanes: fault windows and findings.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lockchaos.harness.checkers.model import Grant, History
from lockchaos.harness.report.loading import FindingRow
from lockchaos.harness.run.history import short_repr

NS = 1e9


@dataclass(frozen=True, slots=True)
class Span:
    start: float
    end: float
    tip: str
    count: int = 1
    token_lo: int | None = None
    token_hi: int | None = None


@dataclass(slots=True)
class Lane:
    name: str
    clients: list[str] = field(default_factory=list)
    granted: list[Span] = field(default_factory=list)
    maybe: list[Span] = field(default_factory=list)  # indeterminate acquires: may have been granted
    believed: list[Span] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)  # write times
    rejected: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FaultSpan:
    start: float
    end: float
    fault: str  # "" when several kinds were merged
    label: str
    tip: str
    lanes: tuple[str, ...] = ()
    count: int = 1


@dataclass(frozen=True, slots=True)
class Mark:
    number: int
    time: float
    severity: str
    lanes: tuple[str, ...]  # the lanes of the clients it names
    tip: str


@dataclass(slots=True)
class TimelineData:
    duration: float
    lanes: list[Lane]
    faults: list[FaultSpan]
    marks: list[Mark]


def lane_of(client: str) -> str:
    return client.split("#", 1)[0]


def _lane_order(name: str) -> tuple[str, int, str]:
    m = re.fullmatch(r"(.*?)(\d+)", name)
    return (m.group(1), int(m.group(2)), name) if m else (name, -1, name)


def extract(h: History, findings: Iterable[FindingRow]) -> TimelineData:
    lanes: dict[str, Lane] = {}

    def lane(client: str) -> Lane:
        name = lane_of(client)
        if name not in lanes:
            lanes[name] = Lane(name)
        if client not in lanes[name].clients:
            lanes[name].clients.append(client)
        return lanes[name]

    for op in h.ops:
        if op.rec.op != "holder":  # the end-of-run observer only looks
            lane(op.rec.client)
    written: dict[tuple[str, int | None], tuple[float, float]] = {}
    for _, w in h.writes:
        t = w.time_ns / NS
        ln = lane(w.client)
        (ln.accepted if w.accepted else ln.rejected).append(t)
        first, last = written.get((w.client, w.token), (t, t))
        written[(w.client, w.token)] = (min(first, t), max(last, t))
    times: dict[str, list[float]] = {}
    for _, w in h.writes:
        if w.token is None:  # a tokenless lock: writes belong to the grant they follow
            times.setdefault(w.client, []).append(w.time_ns / NS)
    nxt: dict[int, float] = {}  # id(grant) -> when its client's next acquire began
    last_of: dict[str, Grant] = {}
    for g in sorted(h.grants, key=lambda g: g.acquire.invoke):
        if g.client in last_of:
            nxt[id(last_of[g.client])] = g.acquire.invoke / NS
        last_of[g.client] = g
    for g in h.grants:
        if g.token is None and g.definite:
            end = nxt.get(id(g), float("inf"))
            ts = times.get(g.client, [])
            lo, hi = bisect.bisect_left(ts, g.acquire.complete / NS), bisect.bisect_left(ts, end)
            if lo < hi:
                written[(g.client, None)] = (ts[lo], ts[hi - 1])
            else:
                written.pop((g.client, None), None)
        _grant_spans(h, g, lane(g.client), written)
    ordered = [lanes[k] for k in sorted(lanes, key=_lane_order)]
    for ln in ordered:
        ln.clients.sort(key=_client_order)
    faults = [_fault_span(f.fault, f.target, f.start, f.end, f.lines, f.detail, lanes) for f in h.faults]
    marks = [Mark(f.number, f.time_s, f.severity, _mark_lanes(f, lanes),
                  f"#{f.number} {f.severity} {f.checker}/{f.kind} at {f.time_s:.3f} s: {f.message}")
             for f in findings]
    end = max([h.end_ns / NS, *(f.end for f in faults), *(m.time for m in marks), 1e-3])
    duration = end * 1.01  # a little room after the last event, so that it is not drawn on the edge
    return TimelineData(duration, ordered, faults, marks)


def _client_order(client: str) -> tuple[str, int]:
    base, _, inc = client.partition("#")
    return (base, int(inc) if inc.isdigit() else 0)


def _grant_spans(h: History, g: Grant, ln: Lane, written: dict[tuple[str, int | None], tuple[float, float]]) -> None:
    acq = g.acquire
    start_ns = acq.complete if g.definite else acq.invoke
    proofs = [r.complete for r in g.releases if r.rec.outcome == "ok"]
    proofs += [r.complete for r in g.renews if r.rec.outcome == "fail"]
    end_ns = max(start_ns, min([g.latest_end, h.end_ns, *(p for p in proofs if p >= start_ns)]))
    start, end = start_ns / NS, end_ns / NS
    token = (f"token {g.token}" if g.token is not None else
             "a lease (no token)" if not h.caps.fencing_tokens else "token unknown")
    if not g.definite:
        ln.maybe.append(Span(start, end, f"{g.client} {token}: acquire indeterminate, may have been granted "
                                         f"{start:.3f}-{end:.3f} s (history line {acq.line})",
                             token_lo=g.token, token_hi=g.token))
        return
    ln.granted.append(Span(start, end, f"{g.client} {token} granted {start:.3f}-{end:.3f} s "
                                       f"(history line {acq.line})", token_lo=g.token, token_hi=g.token))
    last = start
    if (g.token is not None or not h.caps.fencing_tokens) and (g.client, g.token) in written:
        last = max(last, written[(g.client, g.token)][1])
    for r in g.renews:
        last = max(last, r.complete / NS)
    for r in g.releases:
        last = max(last, r.complete / NS)
        break  # the first release ends the belief; later ones belong to nobody's lease
    ln.believed.append(Span(start, last, f"{g.client} believed it held {token} {start:.3f}-{last:.3f} s",
                            token_lo=g.token, token_hi=g.token))


def _fault_span(fault: str, target: str, start_ns: int, end_ns: int, lines: tuple[int, ...],
                detail: dict[str, object], lanes: dict[str, Lane]) -> FaultSpan:
    names = [t for t in target.split(",") if t]
    short = ", ".join(names) if len(names) <= 2 else f"{len(names)} workers"
    hit = tuple(sorted({lane_of(n) for n in names} & lanes.keys(), key=_lane_order))
    start, end = start_ns / NS, end_ns / NS
    extra = ", ".join(f"{k}={v if isinstance(v, str | int | float) else short_repr(v)}" for k, v in detail.items())
    tip = (f"{fault} on {target}: {start:.3f}-{end:.3f} s" + (f" ({extra})" if extra else "")
           + f", history lines {', '.join(map(str, lines))}")
    return FaultSpan(start, end, fault, f"{fault} {short}", tip, hit)


def _mark_lanes(f: FindingRow, lanes: dict[str, Lane]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(lane_of(c) for c in f.clients if lane_of(c) in lanes))
