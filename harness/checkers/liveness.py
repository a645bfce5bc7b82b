"""Liveness: after the holder dies, stalls or is cut off, another client gets the lock in time.

The bound is TTL + declared expiry lag + two retry intervals + a little slack for the calls
themselves. A failover that overlaps a server fault is reported but not judged: the server being
down is a different story. Failover times are reported as p50 / p99 / max.
"""

from __future__ import annotations

from .findings import CheckResult, Finding
from .model import NS_PER_MS, History

NAME = "liveness"
TRIGGERS = ("holder-crash", "holder-pause", "partition")
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
    if times:
        stats.update(p50_s=round(_percentile(times, 0.5), 4), p99_s=round(_percentile(times, 0.99), 4),
                     max_s=round(max(times), 4))
    return CheckResult(NAME, tuple(findings), stats)
