"""Faults on the workers themselves: a holder that dies, stalls, or loses its renewal thread.

They act on the harness's own workers, so every environment can take them.
"""

from __future__ import annotations

from lockchaos.harness.faults.fault import Fault, FaultContext, FaultStep, LeaseTiming


def _crash(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    workers = ctx.pick(step.target)
    if not workers:
        return
    names = ",".join(w.name for w in workers)
    ctx.edge(step, "start", names)
    for w in workers:
        w.crash()
    try:
        ctx.rt.sleep(step.duration * ctx.ttl_s)
    finally:
        for w in workers:
            w.revive()
    ctx.edge(step, "end", names)


def _pause(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    for w in ctx.pick(step.target):  # the worker records the pause when it really stalls
        w.pause_for_s = step.amount * ctx.ttl_s


def _renewer_death(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    workers = ctx.pick(step.target)
    if not workers:
        return
    names = ",".join(w.name for w in workers)
    ctx.edge(step, "start", names)
    for w in workers:
        w.renewer_dead = True
    ctx.edge(step, "end", names, note="the renewer never comes back in this incarnation")


HOLDER_CRASH = Fault(
    "holder-crash", "holder", "#ef4444", _crash,
    soak=(FaultStep(0, "holder-crash", duration=2),),
    timing=LeaseTiming(kills_holder=True, liveness_trigger=True),
    description="the worker dies without releasing (kill -9 of a process worker), revived after the window")
HOLDER_PAUSE = Fault(
    "holder-pause", "holder", "#f59e0b", _pause,
    soak=(FaultStep(0, "holder-pause", amount=2),),
    timing=LeaseTiming(freezes_holder=True, liveness_trigger=True),
    description="the worker stalls for `amount` TTLs (a GC pause; SIGSTOP of a process worker)")
RENEWER_DEATH = Fault(
    "renewer-death", "holder", "#a855f7", _renewer_death,
    soak=(FaultStep(0, "renewer-death"),),
    description="the worker's renewals stop silently while it keeps working")
