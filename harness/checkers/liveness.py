"""Liveness: after the holder dies, stalls or is cut off, another client gets the lock in time; after
the server comes back from a kill or a pause, clients are usable again and the lock is granted.

Holder faults: the bound is TTL + declared expiry lag + two retry intervals + a little slack for the
calls themselves. A failover that overlaps a server fault is reported but not judged: the server
being down is a different story. One that overlaps the service's own failover (a Redlock master
restarting empty, a member lost) may also wait for it: the declared ``failover_ms`` is added; and
one during which a Raft cluster of ours changed leader on its own (``promotion`` notes) may wait
until the victim's re-armed lease ends (a TTL and an election timeout after the promotion). A
fault nobody else contends for (a run with one worker) has no failover to judge. Failover times
are reported as p50 / p99 / max.

An acquire that ended indeterminate may have taken effect: a *ghost grant* nobody heard of, which
holds the key until its latest end however honest the lock. So a ghost of another client that may
have taken the key by the time the failover was due pushes that time to the ghost's latest end plus
two retries (and another ghost sent by then, further: the chain a contender behind a flaky link makes).
A key still refused after that (the refusals are answers, no ghosts) is a stuck lock all the same.
Likewise after a server fault: a ghost grant sent after the server came back keeps the lock
from being free until its latest end. The other way round, a victim whose grant only an unanswered
renew may have prolonged holds nothing to fail over once another client was granted the key.

Server faults: once the restarted or resumed server answers again, (1) every client that keeps
calling must get a determinate answer (ok or refused) within the recovery bound, else it is a
*stuck client* (a library that marks its only endpoint dead for minutes, a connection pool that
never reconnects); (2) once no lease can still be in force, some client must acquire the lock
within the bound. The recovery bound is the failover bound plus one TTL and one client timeout of
margin for the server's own restart and the client's reconnection.

A cluster's leader fault (``leader-crash``, ``leader-pause``) is a failover of the *service*: it
is timed from the fault to the first grant the service makes afterwards (an acquire or a renew sent
after the fault), and judged against the cluster's declared ``failover_ms`` plus a renew interval
and two retries, since clients notice the new leader only on their next call; or, if later, until a
lease in force at the fault can have expired (a release the crash made indeterminate leaves it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from lockchaos.backends.clock import NS_PER_MS
from lockchaos.harness.checkers.findings import CheckResult, Finding
from lockchaos.harness.checkers.livenessindex import Gathered, Indexed, Lookups
from lockchaos.harness.checkers.model import FaultIndex, FaultWindow, History
from lockchaos.harness.faults.registry import named
from lockchaos.harness.run.history import OpRecord

NAME = "liveness"
# Which faults mean what to liveness, from the fault registry (``harness/faults/registry.py``).
TRIGGERS = named(lambda t: t.liveness_trigger)
SERVER_TRIGGERS = named(lambda t: t.server_recovery_trigger)
LEADER_TRIGGERS = named(lambda t: t.leader_trigger)
LEADER_TIMED = named(lambda t: t.leader_trigger or t.timed_failover)
"""Leader faults whose failover is timed and reported; only the triggers' is judged against the bound."""
EXCUSING = named(lambda t: t.excuses_liveness)
"""The service down or slow: a holder's failover they overlap is reported, not judged."""
SERVICE_FAILOVERS = named(lambda t: t.failover)
"""The service itself failing over (a master restarting, a leader lost): a holder's failover they
overlap may also wait for the service's, its declared ``failover_ms`` on top of the bound."""
SLACK_NS = 250 * NS_PER_MS
DEFAULT_TIMEOUT_MS = 2000
"""The client timeout assumed in the recovery margin when a client does not tell its own."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _retries_ns(h: History) -> float:
    """A contender's retry interval: how soon after the lock is free it asks again."""
    plan = h.meta.get("plan", {})
    return float(plan.get("retry_every", 0.1)) * h.ttl_ms * NS_PER_MS


def failover_bound(h: History) -> int:
    return round(h.ttl_ms * NS_PER_MS + h.caps.expiry_lag_ms * NS_PER_MS + 2 * _retries_ns(h) + SLACK_NS)


def recovery_bound(h: History) -> int:
    timeouts = [t for t in h.client_timeouts.values() if isinstance(t, int)]
    timeout_ms = max(timeouts, default=DEFAULT_TIMEOUT_MS)
    return failover_bound(h) + (h.ttl_ms + timeout_ms) * NS_PER_MS


def check(h: History) -> CheckResult:
    calls = Calls(h)
    for op in h.ops:
        calls.op(op.line, op.rec)
    return calls.finish()


class Calls:
    """What liveness needs of every call, gathered as the calls are fed, in any order: who last asked
    for each key, when the workers' last call ended, and, for each server fault whose recovery may be
    judged, a summary per client of its calls in the recovery window and after it. The grants and the
    faults are known before the first call is fed; the calls themselves are never kept."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.latest_acquire: dict[str, dict[str, int]] = {}  # per key and worker, its latest acquire's invoke
        self.workers_end: int | None = None  # the latest complete of a worker's call
        self.last_acquire: int | None = None  # the latest invoke of a worker's acquire
        bound = recovery_bound(h)
        all_faults = FaultIndex(h.faults)
        # Server faults with no other fault in their recovery window: those windows never overlap.
        self.recoveries = [f for f in h.faults if f.fault in SERVER_TRIGGERS
                           and not [o for o in all_faults.overlapping(f.end, f.end + bound) if o is not f]]
        self.recoveries.sort(key=lambda f: f.end)
        self._backs = [f.end for f in self.recoveries]
        self._bound = bound
        self.windows: list[dict[str, _ClientWindow]] = [{} for _ in self.recoveries]
        self.deadlines = sorted({f.end + bound for f in self.recoveries})
        self.latest_invoke: dict[str, int] = {}  # per worker
        # Per worker and deadline bucket (invokes after deadlines[i], up to the next): the first answered call.
        self._answered_after: dict[str, dict[int, tuple[int, int, int]]] = {}

    def op(self, line: int, rec: OpRecord) -> None:
        client = rec.client
        if client == "observer":
            return
        invoke, complete = rec.invoke_ns, rec.complete_ns
        if self.workers_end is None or complete > self.workers_end:
            self.workers_end = complete
        if self.latest_invoke.get(client, -1) < invoke:
            self.latest_invoke[client] = invoke
        if rec.op == "acquire":
            if self.last_acquire is None or invoke > self.last_acquire:
                self.last_acquire = invoke
            latest = self.latest_acquire.setdefault(rec.key, {})
            if latest.get(client, -1) < invoke:
                latest[client] = invoke
        if not self.recoveries:
            return
        i = bisect.bisect_right(self._backs, invoke) - 1
        if i >= 0 and invoke <= self._backs[i] + self._bound:
            window = self.windows[i].get(client)
            if window is None:
                window = self.windows[i][client] = _ClientWindow()
            window.add(line, rec, self._backs[i] + self._bound)
        if rec.outcome != "indeterminate":
            j = bisect.bisect_left(self.deadlines, invoke) - 1  # the last deadline before this invoke
            if j >= 0:
                buckets = self._answered_after.setdefault(client, {})
                first = buckets.get(j)
                if first is None or (invoke, line) < first[:2]:
                    buckets[j] = (invoke, line, complete)

    def contended(self, key: str, victims: set[str], start: int) -> bool:
        """Some worker other than the victims asked for ``key`` at or after ``start``."""
        return any(c not in victims and t >= start for c, t in self.latest_acquire.get(key, {}).items())

    def first_answer_after(self, client: str, deadline: int) -> int | None:
        """When ``client``'s first call invoked after ``deadline`` that got an answer completed, if any."""
        buckets = self._answered_after.get(client, {})
        first = min((b for j, b in buckets.items() if self.deadlines[j] >= deadline), default=None)
        return None if first is None else first[2]

    def finish(self, look: Lookups | None = None) -> CheckResult:
        """Judged against the grants and granted calls: indexed from the whole history, or (``stream.py``)
        the answers gathered as they were fed."""
        return _judge(self.h, self, look if look is not None else Indexed(self.h))


@dataclass(slots=True)
class _ClientWindow:
    """One worker's calls invoked in a server fault's recovery window, as ``_stuck_clients`` judges them."""

    calls: int = 0
    answered: bool = False
    first: tuple[int, int] = (0, 0)  # invoke and line of its first call
    last: tuple[int, int, int] = (0, 0, 0)  # invoke, line and complete of its last
    errors: set[str] = field(default_factory=set)

    def add(self, line: int, rec: OpRecord, deadline: int) -> None:
        key = (rec.invoke_ns, line)
        if not self.calls or key < self.first:
            self.first = key
        if not self.calls or key > self.last[:2]:
            self.last = (rec.invoke_ns, line, rec.complete_ns)
        self.calls += 1
        if rec.outcome != "indeterminate" and rec.complete_ns <= deadline:
            self.answered = True
        if rec.error:
            self.errors.add(str(rec.error).split(":")[0])


def _judge(h: History, calls: Calls, look: Lookups) -> CheckResult:
    bound = failover_bound(h)
    # The service itself was down or slow: its server's faults, and every client's link delayed or reset.
    server_faults = h.server_faults(*EXCUSING) + h.link_faults(*EXCUSING)
    findings: list[Finding] = []
    times: list[float] = []
    excused = uncontended = ghost_excused = 0
    ghost_margin = _retries_ns(h) * 2 + SLACK_NS  # after a ghost's end, contenders' next tries
    keys = look.keys()
    leader_times = _leader_failovers(h, look, server_faults, findings)
    times.extend(leader_times)
    # A holder's failover that overlaps the service's own failover is the service's story too.
    service_down = FaultIndex(server_faults + h.server_faults(*LEADER_TRIGGERS))
    service_failover = FaultIndex(h.server_faults(*SERVICE_FAILOVERS))
    # A contender's call that meets a restarting master or a lost leader waits for the service's
    # failover (redis-py retries against a restarting master for up to a second or more).
    failover_extra = (h.caps.failover_ms or h.ttl_ms) * NS_PER_MS
    for f in h.faults:
        if f.fault not in TRIGGERS:
            continue
        victims = set(f.target.split(","))
        for key in keys:  # each key the victim held fails over on its own
            on = f" on {key}" if len(keys) > 1 else ""
            start = f.start
            # Another client's grant, asked for after the victim's grant was made and granted by the
            # fault, proves that grant over (an unanswered renew of it may have seemed to prolong it):
            # the key is that client's, not the victim's to fail over (``Lookups.held_at``).
            if not look.held_at(f, key, victims):
                continue  # the victim did not hold this lock: nothing to fail over
            if not calls.contended(key, victims, start):
                uncontended += 1  # nobody else asked for the lock (one worker): no failover to judge
                continue
            nxt = look.next_acquire(f, key, victims)
            end = nxt.complete if nxt is not None else h.end_ns
            if service_down.overlapping(start, end):
                excused += 1
                continue
            allowed_ns = bound + (failover_extra if service_failover.overlapping(start, end) else 0)
            allowed_ns = _after_promotions(h, start, start + allowed_ns) - start
            if nxt is None:
                # Judged up to when the workers were stopped: the quiesce after it is nobody's failover.
                if (h.stopped_ns - start > allowed_ns and not h.truncated
                        and h.stopped_ns > look.ghosts_due(key, start + allowed_ns, start, victims, ghost_margin)):
                    findings.append(Finding(NAME, "no-failover", "violation",
                                            f"after {f.fault} of {f.target} no other client acquired the lock{on} "
                                            f"before the workers stopped ({(h.stopped_ns - start) / 1e9:.2f} s later)",
                                            start, tuple(victims), (), f.lines))
                continue
            took = nxt.complete - start
            times.append(took / 1e9)
            if took <= allowed_ns:
                continue
            due = look.ghosts_due(key, start + allowed_ns, start, victims, ghost_margin)
            if nxt.complete <= due:
                ghost_excused += 1  # another client's unheard grant may have held the key so long
                continue
            allowed = due - start
            why = "TTL + lag + retries" + (" + the service's own failover or leader changes"
                                           if allowed_ns > bound else "")
            ghostly = allowed > allowed_ns
            findings.append(Finding(NAME, "slow-failover", "violation",
                                    f"after {f.fault} of {f.target}, {nxt.rec.client} acquired{on} only "
                                    f"{took / 1e9:.3f} s later (bound {allowed / 1e9:.3f} s: {why}"
                                    + (", or an unheard grant's latest end + retries)" if ghostly else ")"),
                                    nxt.complete, (*victims, nxt.rec.client), (), (*f.lines, nxt.line)))
    recovery = _after_server_faults(h, calls, look, findings)
    stats: dict[str, object] = {"failovers": len(times), "excused": excused, "bound_s": round(bound / 1e9, 3),
                                "uncontended": uncontended, **recovery}
    if ghost_excused:
        stats["ghost_excused"] = ghost_excused  # slower than the bound, within an unheard grant's end
    if leader_times:
        stats.update(leader_failovers=len(leader_times), leader_bound_s=round(_leader_bound(h) / 1e9, 3),
                     leader_p50_s=round(_percentile(leader_times, 0.5), 4), leader_max_s=round(max(leader_times), 4))
    if times:
        stats.update(p50_s=round(_percentile(times, 0.5), 4), p99_s=round(_percentile(times, 0.99), 4),
                     max_s=round(max(times), 4))
    return CheckResult(NAME, tuple(findings), stats)


def _after_promotions(h: History, start: int, due: int) -> int:
    """``due`` pushed past the leader changes a Raft cluster made on its own from ``start`` until then:
    each re-armed the victim's lease for a TTL and an election timeout (``run/promotions.py``)."""
    extra = h.ttl_ms * NS_PER_MS + h.caps.expiry_lag_ms * NS_PER_MS + 2 * _retries_ns(h) + SLACK_NS
    for p in sorted(h.promotions, key=lambda p: p.start_ns):
        if p.start_ns > due:
            break
        if p.end_ns >= start:
            due = max(due, round(p.end_ns + p.extend_ns + extra))
    return due


def _after_server_faults(h: History, calls: Calls, look: Lookups, findings: list[Finding]) -> dict[str, object]:
    """Stuck clients and a lock nobody can get, once a killed or paused server answers again."""
    bound = recovery_bound(h)
    workers_end = calls.workers_end
    if workers_end is None:
        return {}
    last_acquire = calls.last_acquire
    judged = 0
    recoveries: list[float] = []
    windows = {id(f): w for f, w in zip(calls.recoveries, calls.windows, strict=True)}
    for f in h.faults:
        if f.fault not in SERVER_TRIGGERS:
            continue
        back, deadline = f.end, f.end + bound
        if deadline > workers_end:
            continue  # the run ended before the bound ran out: nothing to judge
        if id(f) not in windows:
            continue  # another fault overlaps the recovery: its own story
        judged += 1
        _stuck_clients(f, windows[id(f)], calls, back, deadline, bound, findings)
        # The lock is free once no grant made before the server came back can still be in force.
        free_from = look.free_from(f)
        if free_from + bound > workers_end:
            continue
        if last_acquire is None or last_acquire < free_from:
            continue  # nobody asked
        nxt = look.acquire_after(f)  # any grant since the server came back
        if nxt is not None:
            recoveries.append(max(0, nxt.complete - free_from) / 1e9)
        if nxt is not None and nxt.complete <= free_from + bound:
            continue
        # Nor while a ghost grant (an acquire ended indeterminate) sent since, before the lock was due,
        # may hold it: the lock is due a bound after that grant's latest end.
        due = look.ghosts_due(None, free_from + bound, back, (), bound, before=None if nxt is None else nxt.complete)
        if nxt is not None and nxt.complete <= due:
            continue
        if due > workers_end:
            continue  # the run ended before the bound after the ghost ran out: nothing to judge
        ghost = "" if due == free_from + bound else f" (or from {(due - bound) / 1e9:.3f} s, an unheard grant's end)"
        findings.append(Finding(
            NAME, "no-recovery", "violation",
            f"after {f.fault} the server answered again at {back / 1e9:.3f} s and the lock was free from "
            f"{free_from / 1e9:.3f} s{ghost}, but no client acquired it within {bound / 1e9:.3f} s "
            + ("(not before the run ended)" if nxt is None else f"({nxt.rec.client} only at "
               f"{nxt.complete / 1e9:.3f} s)"),
            due, (), (), f.lines + (() if nxt is None else (nxt.line,))))
    stats: dict[str, object] = {"server_recoveries_judged": judged, "recovery_bound_s": round(bound / 1e9, 3)}
    if recoveries:
        stats["recovery_max_s"] = round(max(recoveries), 4)  # from when the lock was free again
    return stats


def _stuck_clients(f: FaultWindow, window: dict[str, _ClientWindow], calls: Calls, back: int, deadline: int,
                   bound: int, findings: list[Finding]) -> None:
    """A client that kept calling after the server was back and got only errors for the whole bound.

    ``window``: per worker, its calls invoked in [back, deadline]; ``calls`` tells what each did after."""
    for client, ops in sorted(window.items()):
        if ops.answered:
            continue
        later = calls.latest_invoke.get(client, -1) > deadline
        if not later and ops.last[2] <= deadline:
            continue  # the client stopped calling (crashed, or the run ended): nothing to judge
        first_ok = calls.first_answer_after(client, deadline)
        errors = ", ".join(sorted(ops.errors))
        then = ("and none after" if first_ok is None
                else f"until {first_ok / 1e9:.3f} s")
        findings.append(Finding(
            NAME, "stuck-client", "violation",
            f"{client} got no answer for {bound / 1e9:.3f} s after the server answered again ({f.fault} ended "
            f"at {back / 1e9:.3f} s): {ops.calls} calls, all indeterminate ({errors or 'no error'}) "
            f"{then}; the client stays unusable after the server recovered",
            deadline, (client,), (), (*f.lines, ops.first[1], ops.last[1])))


def _leader_bound(h: History) -> float:
    plan = h.meta.get("plan", {})
    retry_ns = float(plan.get("retry_every", 0.1)) * h.ttl_ms * NS_PER_MS
    renew_ns = float(plan.get("renew_every", 1 / 3)) * h.ttl_ms * NS_PER_MS
    declared = h.caps.failover_ms * NS_PER_MS if h.caps.failover_ms else h.ttl_ms * NS_PER_MS
    return declared + renew_ns + 2 * retry_ns + SLACK_NS


def _leader_failovers(h: History, look: Lookups, server_faults: list[FaultWindow],
                      findings: list[Finding]) -> list[float]:
    """Seconds from each leader fault to the service's first grant sent after it."""
    if not any(f.fault in LEADER_TIMED for f in h.faults):
        return []  # no leader fault to time: the index of grants below is not needed
    bound = _leader_bound(h)
    plan = h.meta.get("plan", {})
    retry_ns = float(plan.get("retry_every", 0.1)) * h.ttl_ms * NS_PER_MS
    times: list[float] = []
    for f in h.faults:
        if f.fault not in LEADER_TIMED:
            continue
        judged = f.fault in LEADER_TRIGGERS  # the others' failover is reported, not judged
        nxt = look.granted_from(f)
        end = nxt.complete if nxt is not None else h.stopped_ns
        if any(s.start <= end and s.end >= f.start for s in server_faults):
            continue  # the whole service was also down: not this failover's doing
        if nxt is None:
            if judged and h.stopped_ns - f.start > bound and not h.truncated:
                findings.append(Finding(NAME, "no-failover", "violation",
                                        f"after {f.fault} of {f.target} the service granted nothing before "
                                        f"the workers stopped ({(h.stopped_ns - f.start) / 1e9:.2f} s later)",
                                        f.start, (f.target,), (), f.lines))
            continue
        took = nxt.complete - f.start
        times.append(took / 1e9)
        # A lease left behind at the fault (its release lost to the crash) may block until it expires.
        orphan = look.left_at(f)  # the longest-lived of them decides
        orphans = [orphan] if orphan is not None and orphan >= f.start else []
        allowed = max([bound, *(end - f.start + 2 * retry_ns + SLACK_NS for end in orphans)])
        if judged and took > allowed:
            findings.append(Finding(NAME, "slow-failover", "violation",
                                    f"after {f.fault} of {f.target}, the first grant ({nxt.rec.op} by "
                                    f"{nxt.rec.client}) came {took / 1e9:.3f} s later (bound {allowed / 1e9:.3f} s: "
                                    "declared failover + renew interval + retries, or a lease left at the "
                                    "fault expiring)",
                                    nxt.complete, (f.target, nxt.rec.client), (), (*f.lines, nxt.line)))
    return times


def gathered(h: History) -> Gathered:
    """The answers liveness needs, gathered as grants and granted calls are fed (``stream.py``)."""
    return Gathered(h, TRIGGERS, SERVER_TRIGGERS, LEADER_TIMED)
