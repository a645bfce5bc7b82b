"""Faults on the lock server itself: kill -9 and restart, SIGSTOP and resume, a jump of its clock.

The harness reaches a server it started by signals (and the fake by its hooks); never the user's
own server (``--url``). A clock jump reaches the fake, and a process-mode Redis launched under
libfaketime (``harness/servers/faketime.py``); where it cannot, the reason is measured, not assumed.
"""

from __future__ import annotations

from lockchaos.harness.faults.fault import Fault, FaultContext, FaultStep, LeaseTiming, Reach

CLOCK_JUMP_UNREACHABLE = {
    "redis": "clock-jump: libfaketime reaches only a redis-server the harness launches as a process "
             "(harness/servers/faketime.py); this one runs in a container or elsewhere",
    "etcd": "clock-jump: no clock fault reaches a running etcd: libfaketime misses Go's vDSO clock reads "
            "(+1 h asked, 0 s measured), and a time namespace's monotonic offset, the clock etcd's leases "
            "expire on, is refused once a process is inside (EACCES; bench/probe_clock_faults.py); "
            "run it against the fake",
}
"""Why clock-jump is skipped on real servers, by server kind: measured, not assumed."""
CLOCK_JUMP_UNREACHABLE["redis-sentinel"] = ("clock-jump: a Sentinel group's nodes are not launched under libfaketime "
                                             "(only a single process-mode Redis is)")


def server_unsupported(fault: Fault, reach: Reach) -> str | None:
    """Signals reach only a server the harness started (or the fake's hooks)."""
    if not reach.started_here:
        return f"{fault.name}: refused on a server the harness did not start"
    return None


def clock_unsupported(fault: Fault, reach: Reach) -> str | None:
    """The fake's clock, or a process-mode Redis launched under libfaketime: see ``CLOCK_JUMP_UNREACHABLE``."""
    if reach.in_process or reach.clock_faults:
        return None
    if reach.clock_missing is not None:
        return f"{fault.name}: {reach.clock_missing}"
    return CLOCK_JUMP_UNREACHABLE.get(reach.server_kind, CLOCK_JUMP_UNREACHABLE["redis"])


def _kill(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    ctx.edge(step, "start", "server")
    ctx.server.kill()
    try:
        ctx.rt.sleep(step.duration * ctx.ttl_s)
    finally:
        ctx.server.restart()
    ctx.edge(step, "end", "server")


def _pause(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    ctx.edge(step, "start", "server")
    ctx.server.pause()
    try:
        ctx.rt.sleep(step.duration * ctx.ttl_s)
    finally:
        ctx.server.resume()
    ctx.edge(step, "end", "server")


def _clock_jump(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    delta_ms = round(step.amount * ctx.ttl_s * 1000)
    ctx.edge(step, "start", "server", delta_ms=delta_ms)
    ctx.server.jump_clock(delta_ms)
    ctx.edge(step, "end", "server")


SERVER_KILL = Fault(
    "server-kill", "server", "#6b7280", _kill,
    soak=(FaultStep(0, "server-kill", target="server", duration=0.5),),
    timing=LeaseTiming(restarts_server=True, server_recovery_trigger=True, excuses_liveness=True),
    check_support=server_unsupported,
    description="kill -9 of the server, restarted (with its configured durability) after the window")
SERVER_PAUSE = Fault(
    "server-pause", "server", "#64748b", _pause,
    soak=(FaultStep(0, "server-pause", target="server", duration=1.2),),
    timing=LeaseTiming(freezes_server=True, server_recovery_trigger=True, excuses_liveness=True),
    check_support=server_unsupported,
    description="SIGSTOP of the server, SIGCONT after the window")
CLOCK_JUMP = Fault(
    "clock-jump", "clock", "#0ea5e9", _clock_jump,
    soak=(FaultStep(0, "clock-jump", target="server", amount=1.5),),
    timing=LeaseTiming(ends_leases_early=True, excuses_liveness=True),
    check_support=clock_unsupported,
    description="the server's clock jumps `amount` TTLs forward")
