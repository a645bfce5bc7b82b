"""Liveness: after the holder dies, stalls or is cut off, another client gets the lock in time.

The bound is TTL + declared expiry lag + two retry intervals + a little slack for the calls
themselves. A failover that overlaps a server fault is reported but not judged: the server being
down is a different story. Failover times are reported as p50 / p99 / max.

A cluster's leader fault (``leader-crash``, ``leader-pause``) is a failover of the *service*: it
is timed from the fault to the first grant the service makes afterwards (an acquire or a renew sent
after the fault), and judged against the cluster's declared ``failover_ms`` plus a renew interval
and two retries, since clients notice the new leader only on their next call; or, if later, until a
lease in force at the fault can have expired (a release the crash made indeterminate leaves it).
"""

from __future__ import annotations

from .findings import CheckResult, Finding
from .model import NS_PER_MS, FaultWindow, History

NAME = "liveness"
TRIGGERS = ("holder-crash", "holder-pause", "partition")
LEADER_TRIGGERS = ("leader-crash", "leader-pause")
SLACK_NS = 250 * NS_PER_MS


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def check(h: History) -> CheckResult:
    plan = h.meta.get("plan", {})
    retry_ns = float(plan.get("retry_every", 0.1)) * h.ttl_ms * NS_PER_MS
    bound = h.ttl_ms * NS_PER_MS + h.caps.expiry_lag_ms * NS_PER_MS + 2 * retry_ns + SLACK_NS
    server_faults = h.server_faults("server-kill", "server-pause", "clock-jump", "latency", "reset-storm")
    findings: list[Finding] = []
    times: list[float] = []
    excused = 0
    acquires = sorted((o for o in h.ops if o.rec.op == "acquire" and o.rec.outcome == "ok"),
                      key=lambda o: o.complete)
    leader_times = _leader_failovers(h, retry_ns, server_faults, findings)
    times.extend(leader_times)
    for f in h.faults:
        if f.fault not in TRIGGERS:
            continue
        victims = set(f.target.split(","))
        held = [g for g in h.grants if g.client in victims and g.acquire.complete <= f.start <= g.latest_end]
        if not held:
            continue  # the victim did not hold the lock: nothing to fail over
        start = f.start
        nxt = next((o for o in acquires if o.complete > start and o.rec.client not in victims), None)
        end = nxt.complete if nxt is not None else h.end_ns
        if any(s.start <= end and s.end >= start for s in server_faults):
            excused += 1
            continue
        if nxt is None:
            if h.end_ns - start > bound and not h.truncated:
                findings.append(Finding(NAME, "no-failover", "violation",
                                        f"after {f.fault} of {f.target} no other client acquired the lock "
                                        f"before the run ended ({(h.end_ns - start) / 1e9:.2f} s later)",
                                        start, tuple(victims), (), f.lines))
            continue
        took = nxt.complete - start
        times.append(took / 1e9)
        if took > bound:
            findings.append(Finding(NAME, "slow-failover", "violation",
                                    f"after {f.fault} of {f.target}, {nxt.rec.client} acquired only "
                                    f"{took / 1e9:.3f} s later (bound {bound / 1e9:.3f} s: TTL + lag + retries)",
                                    nxt.complete, (*victims, nxt.rec.client), (), (*f.lines, nxt.line)))
    stats: dict[str, object] = {"failovers": len(times), "excused": excused, "bound_s": round(bound / 1e9, 3)}
    if leader_times:
        stats.update(leader_failovers=len(leader_times), leader_bound_s=round(_leader_bound(h, retry_ns) / 1e9, 3),
                     leader_p50_s=round(_percentile(leader_times, 0.5), 4), leader_max_s=round(max(leader_times), 4))
    if times:
        stats.update(p50_s=round(_percentile(times, 0.5), 4), p99_s=round(_percentile(times, 0.99), 4),
                     max_s=round(max(times), 4))
    return CheckResult(NAME, tuple(findings), stats)


def _leader_bound(h: History, retry_ns: float) -> float:
    plan = h.meta.get("plan", {})
    renew_ns = float(plan.get("renew_every", 1 / 3)) * h.ttl_ms * NS_PER_MS
    declared = h.caps.failover_ms * NS_PER_MS if h.caps.failover_ms else h.ttl_ms * NS_PER_MS
    return declared + renew_ns + 2 * retry_ns + SLACK_NS


def _leader_failovers(h: History, retry_ns: float, server_faults: list[FaultWindow],
                      findings: list[Finding]) -> list[float]:
    """Seconds from each leader fault to the service's first grant sent after it."""
    bound = _leader_bound(h, retry_ns)
    grants = sorted((o for o in h.ops if o.rec.op in ("acquire", "renew") and o.rec.outcome == "ok"),
                    key=lambda o: o.complete)
    times: list[float] = []
    for f in h.faults:
        if f.fault not in LEADER_TRIGGERS:
            continue
        nxt = next((o for o in grants if o.invoke >= f.start), None)
        end = nxt.complete if nxt is not None else h.end_ns
        if any(s.start <= end and s.end >= f.start for s in server_faults):
            continue  # the whole service was also down: not this failover's doing
        if nxt is None:
            if h.end_ns - f.start > bound and not h.truncated:
                findings.append(Finding(NAME, "no-failover", "violation",
                                        f"after {f.fault} of {f.target} the service granted nothing before "
                                        f"the run ended ({(h.end_ns - f.start) / 1e9:.2f} s later)",
                                        f.start, (f.target,), (), f.lines))
            continue
        took = nxt.complete - f.start
        times.append(took / 1e9)
        # A lease left behind at the fault (its release lost to the crash) may block until it expires.
        orphans = [g.latest_end for g in h.grants if g.acquire.complete <= f.start <= g.latest_end]
        allowed = max([bound, *(end - f.start + 2 * retry_ns + SLACK_NS for end in orphans)])
        if took > allowed:
            findings.append(Finding(NAME, "slow-failover", "violation",
                                    f"after {f.fault} of {f.target}, the first grant ({nxt.rec.op} by "
                                    f"{nxt.rec.client}) came {took / 1e9:.3f} s later (bound {allowed / 1e9:.3f} s: "
                                    "declared failover + renew interval + retries, or a lease left at the "
                                    "fault expiring)",
                                    nxt.complete, (f.target, nxt.rec.client), (), (*f.lines, nxt.line)))
    return times
