"""Liveness: after the holder dies, stalls or is cut off, another client gets the lock in time; after
the server comes back from a kill or a pause, clients are usable again and the lock is granted.

Holder faults: the bound is TTL + declared expiry lag + two retry intervals + a little slack for the
calls themselves. A failover that overlaps a server fault is reported but not judged: the server
being down is a different story. A fault nobody else contends for (a run with one worker) has no
failover to judge. Failover times are reported as p50 / p99 / max.

Server faults: once the restarted or resumed server answers again, (1) every client that keeps
calling must get a determinate answer (ok or refused) within the recovery bound, else it is a
*stuck client* (a library that marks its only endpoint dead for minutes, a connection pool that
never reconnects); (2) once no lease can still be in force, some client must acquire the lock
within the bound. The recovery bound is the failover bound plus one TTL and one client timeout of
margin for the server's own restart and the client's reconnection.
"""

from __future__ import annotations

from .findings import CheckResult, Finding
from .model import NS_PER_MS, FaultWindow, History, Op

NAME = "liveness"
TRIGGERS = ("holder-crash", "holder-pause", "partition")
SERVER_TRIGGERS = ("server-kill", "server-pause")
SLACK_NS = 250 * NS_PER_MS
DEFAULT_TIMEOUT_MS = 2000
"""The client timeout assumed in the recovery margin when a client does not tell its own."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def failover_bound(h: History) -> int:
    plan = h.meta.get("plan", {})
    retry_ns = float(plan.get("retry_every", 0.1)) * h.ttl_ms * NS_PER_MS
    return round(h.ttl_ms * NS_PER_MS + h.caps.expiry_lag_ms * NS_PER_MS + 2 * retry_ns + SLACK_NS)


def recovery_bound(h: History) -> int:
    timeouts = [t for t in h.client_timeouts.values() if isinstance(t, int)]
    timeout_ms = max(timeouts, default=DEFAULT_TIMEOUT_MS)
    return failover_bound(h) + (h.ttl_ms + timeout_ms) * NS_PER_MS


def check(h: History) -> CheckResult:
    bound = failover_bound(h)
    server_faults = h.server_faults("server-kill", "server-pause", "clock-jump", "latency", "reset-storm")
    findings: list[Finding] = []
    times: list[float] = []
    excused = uncontended = 0
    acquires = sorted((o for o in h.ops if o.rec.op == "acquire" and o.rec.outcome == "ok"),
                      key=lambda o: o.complete)
    attempts = [o for o in h.ops if o.rec.op == "acquire" and o.rec.client != "observer"]
    for f in h.faults:
        if f.fault not in TRIGGERS:
            continue
        victims = set(f.target.split(","))
        held = [g for g in h.grants if g.client in victims and g.acquire.complete <= f.start <= g.latest_end]
        if not held:
            continue  # the victim did not hold the lock: nothing to fail over
        start = f.start
        if not any(o.rec.client not in victims and o.invoke >= start for o in attempts):
            uncontended += 1  # nobody else asked for the lock (one worker): no failover to judge
            continue
        nxt = next((o for o in acquires if o.complete > start and o.rec.client not in victims), None)
        end = nxt.complete if nxt is not None else h.end_ns
        if any(s.start <= end and s.end >= start for s in server_faults):
            excused += 1
            continue
        if nxt is None:
            # Judged up to when the workers were stopped: the quiesce after it is nobody's failover.
            if h.stopped_ns - start > bound and not h.truncated:
                findings.append(Finding(NAME, "no-failover", "violation",
                                        f"after {f.fault} of {f.target} no other client acquired the lock "
                                        f"before the workers stopped ({(h.stopped_ns - start) / 1e9:.2f} s later)",
                                        start, tuple(victims), (), f.lines))
            continue
        took = nxt.complete - start
        times.append(took / 1e9)
        if took > bound:
            findings.append(Finding(NAME, "slow-failover", "violation",
                                    f"after {f.fault} of {f.target}, {nxt.rec.client} acquired only "
                                    f"{took / 1e9:.3f} s later (bound {bound / 1e9:.3f} s: TTL + lag + retries)",
                                    nxt.complete, (*victims, nxt.rec.client), (), (*f.lines, nxt.line)))
    recovery = _after_server_faults(h, acquires, findings)
    stats: dict[str, object] = {"failovers": len(times), "excused": excused, "bound_s": round(bound / 1e9, 3),
                                "uncontended": uncontended, **recovery}
    if times:
        stats.update(p50_s=round(_percentile(times, 0.5), 4), p99_s=round(_percentile(times, 0.99), 4),
                     max_s=round(max(times), 4))
    return CheckResult(NAME, tuple(findings), stats)


def _after_server_faults(h: History, acquires: list[Op], findings: list[Finding]) -> dict[str, object]:
    """Stuck clients and a lock nobody can get, once a killed or paused server answers again."""
    bound = recovery_bound(h)
    worker_ops = sorted((o for o in h.ops if o.rec.client != "observer"), key=lambda o: o.invoke)
    if not worker_ops:
        return {}
    workers_end = max(o.complete for o in worker_ops)
    judged = 0
    recoveries: list[float] = []
    for f in h.faults:
        if f.fault not in SERVER_TRIGGERS:
            continue
        back, deadline = f.end, f.end + bound
        if deadline > workers_end:
            continue  # the run ended before the bound ran out: nothing to judge
        others = [o for o in h.faults if o is not f and o.start <= deadline and o.end >= back]
        if others:
            continue  # another fault overlaps the recovery: its own story
        judged += 1
        _stuck_clients(h, f, worker_ops, back, deadline, bound, findings)
        # The lock is free once no grant made before the server came back can still be in force.
        free_from = max([back] + [g.latest_end for g in h.grants if g.acquire.invoke <= back])
        if free_from + bound > workers_end:
            continue
        if not any(o.invoke >= free_from for o in worker_ops if o.rec.op == "acquire"):
            continue  # nobody asked
        nxt = next((o for o in acquires if o.complete > back), None)  # any grant since the server came back
        if nxt is not None:
            recoveries.append(max(0, nxt.complete - free_from) / 1e9)
        if nxt is None or nxt.complete > free_from + bound:
            findings.append(Finding(
                NAME, "no-recovery", "violation",
                f"after {f.fault} the server answered again at {back / 1e9:.3f} s and the lock was free from "
                f"{free_from / 1e9:.3f} s, but no client acquired it within {bound / 1e9:.3f} s "
                + ("(not before the run ended)" if nxt is None else f"({nxt.rec.client} only at "
                   f"{nxt.complete / 1e9:.3f} s)"),
                free_from + bound, (), (), f.lines + (() if nxt is None else (nxt.line,))))
    stats: dict[str, object] = {"server_recoveries_judged": judged, "recovery_bound_s": round(bound / 1e9, 3)}
    if recoveries:
        stats["recovery_max_s"] = round(max(recoveries), 4)  # from when the lock was free again
    return stats


def _stuck_clients(h: History, f: FaultWindow, worker_ops: list[Op], back: int, deadline: int, bound: int,
                   findings: list[Finding]) -> None:
    """A client that kept calling after the server was back and got only errors for the whole bound."""
    by_client: dict[str, list[Op]] = {}
    for o in worker_ops:
        if o.invoke >= back and o.invoke <= deadline:
            by_client.setdefault(o.rec.client, []).append(o)
    for client, ops in sorted(by_client.items()):
        answered = [o for o in ops if o.rec.outcome != "indeterminate" and o.complete <= deadline]
        if answered:
            continue
        later = [o for o in worker_ops if o.rec.client == client and o.invoke > deadline]
        if not later and ops[-1].complete <= deadline:
            continue  # the client stopped calling (crashed, or the run ended): nothing to judge
        errors = sorted({str(o.rec.error).split(":")[0] for o in ops if o.rec.error})
        first_ok = next((o for o in later if o.rec.outcome != "indeterminate"), None)
        then = ("and none after" if first_ok is None
                else f"until {first_ok.complete / 1e9:.3f} s")
        findings.append(Finding(
            NAME, "stuck-client", "violation",
            f"{client} got no answer for {bound / 1e9:.3f} s after the server answered again ({f.fault} ended "
            f"at {back / 1e9:.3f} s): {len(ops)} calls, all indeterminate ({', '.join(errors) or 'no error'}) "
            f"{then}; the client stays unusable after the server recovered",
            deadline, (client,), (), (*f.lines, ops[0].line, ops[-1].line)))
