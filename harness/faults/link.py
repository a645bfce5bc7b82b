"""Faults on one worker's network link: the fake client's own hooks, or the worker's TCP fault proxy.

Some act on the link for a window (partition, latency...); others arm the worker, which strikes
its next call of one kind through its link and records the window itself (a lost reply, a late
release). Either way the worker needs a link of its own the nemesis can fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lockchaos.harness.faults.fault import Fault, FaultContext, FaultStep, LeaseTiming, Reach

if TYPE_CHECKING:
    from lockchaos.harness.faults.nemesis import HolderFaults
    from lockchaos.harness.run.worker import LinkFaults

NS = 1_000_000_000


def link_unsupported(fault: Fault, reach: Reach) -> str | None:
    """A link fault needs a faultable link per worker: the fake's own clients, or a proxy per worker."""
    if reach.faultable_links:
        return None
    if reach.in_process:
        return (f"{fault.name}: the adapter talks to the in-process fake without a network; "
                "use --server redis|etcd for network faults")
    if reach.cluster_kind is not None:  # an etcd cluster's and Redlock's have per-worker member proxies
        return (f"{fault.name}: no per-client fault proxy reaches {reach.cluster_kind}'s clients: they connect "
                "to the data node the cluster announces (where the harness isolates a leader), past any proxy")
    if reach.remote:
        return f"{fault.name}: the fault proxy only forwards to 127.0.0.1; this server is remote"
    return f"{fault.name}: the workers have no fault-injectable links"


def _windowed(on: Callable[[LinkFaults, FaultStep, float], None], off: Callable[[LinkFaults], None],
              detail: Callable[[FaultStep, float], dict[str, int]]) -> Callable[[Fault, FaultContext, FaultStep], None]:
    """A fault that holds its links in a state for the step's duration, then heals them."""

    def apply(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
        workers = ctx.pick(step.target)
        if not workers:
            return
        names = ",".join(w.name for w in workers)
        links = ctx.links(workers)
        ctx.edge(step, "start", names, **detail(step, ctx.ttl_s))
        for link in links:
            on(link, step, ctx.ttl_s)
        try:
            ctx.rt.sleep(step.duration * ctx.ttl_s)
        finally:
            for link in links:
                off(link)
        ctx.edge(step, "end", names)

    return apply


def _amount_ms(step: FaultStep, ttl_s: float) -> int:
    return round(step.amount * ttl_s * 1000)


def _reset_storm(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    workers = ctx.pick(step.target)
    if not workers:
        return
    names = ",".join(w.name for w in workers)
    links = ctx.links(workers)
    every = max(step.amount * ctx.ttl_s, 0.001)
    ctx.edge(step, "start", names, every_s=every)
    end = ctx.rt.now_ns() + step.duration * ctx.ttl_s * NS
    while ctx.rt.now_ns() < end:
        for link in links:
            link.reset()
        ctx.rt.sleep(every)
    ctx.edge(step, "end", names)


def _arming(arm: Callable[[HolderFaults, FaultStep, float], None]) -> Callable[[Fault, FaultContext, FaultStep], None]:
    """A fault the worker strikes on its own next call through its link, recording the window itself."""

    def apply(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
        for w in ctx.pick(step.target):
            arm(w, step, ctx.ttl_s)

    return apply


def _arm_lose_release_reply(w: HolderFaults, step: FaultStep, ttl_s: float) -> None:
    w.lose_release_reply = True


def _arm_late_release(w: HolderFaults, step: FaultStep, ttl_s: float) -> None:
    w.late_release_ms = max(1, _amount_ms(step, ttl_s))


def _arm_lose_acquire_reply(w: HolderFaults, step: FaultStep, ttl_s: float) -> None:
    w.lose_acquire_reply = True


def _arm_lose_release_request(w: HolderFaults, step: FaultStep, ttl_s: float) -> None:
    w.lose_release_request = True


def _arm_lose_renew_request(w: HolderFaults, step: FaultStep, ttl_s: float) -> None:
    w.lose_renew_requests_s = max(step.duration, 0.0) * ttl_s


PARTITION = Fault(
    "partition", "link", "#f97316",
    _windowed(lambda link, step, ttl_s: link.partition(), lambda link: link.heal(), lambda step, ttl_s: {}),
    soak=(FaultStep(0, "partition", duration=2), FaultStep(0, "partition", target="random", duration=2)),
    timing=LeaseTiming(liveness_trigger=True),
    check_support=link_unsupported,
    description="bytes vanish both ways, connections stay open")
LATENCY = Fault(
    "latency", "link", "#eab308",
    _windowed(lambda link, step, ttl_s: link.set_latency(_amount_ms(step, ttl_s)), lambda link: link.set_latency(0),
              lambda step, ttl_s: {"one_way_ms": _amount_ms(step, ttl_s)}),
    soak=(FaultStep(0, "latency", target="all", duration=2, amount=0.15),),
    timing=LeaseTiming(delays_requests=True, excuses_liveness=True),
    check_support=link_unsupported,
    description="`amount` TTLs of delay added each way")
REPLY_DELAY = Fault(
    "reply-delay", "link", "#14b8a6",
    _windowed(lambda link, step, ttl_s: link.delay_replies(_amount_ms(step, ttl_s)),
              lambda link: link.delay_replies(0),
              lambda step, ttl_s: {"reply_delay_ms": _amount_ms(step, ttl_s)}),
    soak=(FaultStep(0, "reply-delay", target="random", duration=2, amount=0.5),),
    check_support=link_unsupported,
    description="replies (not requests) held back `amount` TTLs")
RESET_STORM = Fault(
    "reset-storm", "link", "#8b5cf6", _reset_storm,
    soak=(FaultStep(0, "reset-storm", target="all", duration=1, amount=0.1),),
    timing=LeaseTiming(excuses_liveness=True),
    check_support=link_unsupported,
    description="every connection reset each `amount` TTLs")
LOSE_RELEASE_REPLY = Fault(
    "lose-release-reply", "link", "#ec4899", _arming(_arm_lose_release_reply),
    soak=(FaultStep(0, "lose-release-reply", duration=2),),
    check_support=link_unsupported,
    description="the worker's next release takes effect, its reply is lost to a reset")
LATE_RELEASE = Fault(
    "late-release", "link", "#22c55e", _arming(_arm_late_release),
    soak=(FaultStep(0, "late-release", amount=0.2),),
    check_support=link_unsupported,
    description="the worker releases at its lease's end over a link slowed by `amount` TTLs")
LOSE_ACQUIRE_REPLY = Fault(
    "lose-acquire-reply", "link", "#f43f5e", _arming(_arm_lose_acquire_reply),
    soak=(FaultStep(0, "lose-acquire-reply", target="random"),),
    check_support=link_unsupported,
    description="the worker's next acquire takes effect, its reply is lost to a reset")
LOSE_RELEASE_REQUEST = Fault(
    "lose-release-request", "link", "#a855f7", _arming(_arm_lose_release_request),
    soak=(FaultStep(0, "lose-release-request", target="random"),),
    check_support=link_unsupported,
    description="the worker's next release never reaches the server: its link drops every byte until "
                "the call gives up (the lease stays until its TTL)")
LOSE_RENEW_REQUEST = Fault(
    "lose-renew-request", "link", "#0ea5e9", _arming(_arm_lose_renew_request),
    soak=(FaultStep(0, "lose-renew-request", target="random", duration=1.5),),
    check_support=link_unsupported,
    description="for `duration` TTLs from the worker's next renew, no renew reaches the server: its link "
                "drops every byte of each until the call gives up (the lease keeps its old end)")
