"""Faults on the lock server itself: kill -9 and restart, SIGSTOP and resume, a jump of its clock.

The harness reaches a server it started by signals (and the fake by its hooks); never the user's
own server (``--url``). No clock fault reaches a real server process: measured, not assumed.
"""

from __future__ import annotations

from lockchaos.harness.faults.fault import Fault, FaultContext, FaultStep, LeaseTiming, Reach

CLOCK_JUMP_UNREACHABLE = {
    "redis": "clock-jump: no clock fault reaches Debian's redis-server: under libfaketime (LD_PRELOAD) it "
             "hangs at start, since its jemalloc calls clock_gettime while libfaketime initialises "
             "(libfaketime#130, open; measured by bench/probe_clock_faults.py); run it against the fake",
    "etcd": "clock-jump: no clock fault reaches etcd: a Go binary reads the clock through the vDSO, and "
            "under libfaketime its log clock stays at real time (+1 h asked, 0 s measured by "
            "bench/probe_clock_faults.py); run it against the fake",
}
"""Why clock-jump is skipped on real servers, by server kind: measured, not assumed."""
CLOCK_JUMP_UNREACHABLE["redis-sentinel"] = CLOCK_JUMP_UNREACHABLE["redis"]


def server_unsupported(fault: Fault, reach: Reach) -> str | None:
    """Signals reach only a server the harness started (or the fake's hooks)."""
    if not reach.started_here:
        return f"{fault.name}: refused on a server the harness did not start"
    return None


def clock_unsupported(fault: Fault, reach: Reach) -> str | None:
    """Only the fake's clock can be moved: see ``CLOCK_JUMP_UNREACHABLE``."""
    if reach.in_process:
        return None
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
