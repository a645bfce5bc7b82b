"""Faults on a replicated service's roles: its current leader (etcd) or primary (Sentinel), and
Redlock's independent masters. The fake stands for an ideal cluster and takes them all; a single
server has no leader to fail over, and Redlock's masters have none either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from lockchaos.backends.base import FaultUnsupported
from lockchaos.harness.faults.fault import Fault, FaultContext, FaultStep, LeaseTiming, Reach

if TYPE_CHECKING:
    from lockchaos.harness.faults.nemesis import MasterFaults


def leader_unsupported(fault: Fault, reach: Reach) -> str | None:
    if reach.in_process:
        return None
    if reach.cluster_kind == "redlock":
        return f"{fault.name}: Redlock's masters are independent, there is no leader to fail over"
    if not reach.started_here:
        return f"{fault.name}: refused on a server the harness did not start"
    if reach.cluster_kind is None:
        return (f"{fault.name}: {reach.label} is a single server with no leader to fail over; "
                "use --backend etcd-cluster or redis-sentinel")
    return None


def amnesia_unsupported(fault: Fault, reach: Reach) -> str | None:
    """A primary restarted empty before anyone notices: Redis Sentinel's hazard (see ``wipe_member``)."""
    why = leader_unsupported(fault, reach)
    if why is not None or reach.in_process:
        return why
    if reach.wipe_refused is not None:
        return f"{fault.name}: {reach.wipe_refused}"
    return None


@runtime_checkable
class MemberFaults(Protocol):
    """A cluster's members by role beyond its leader: its followers, and restarting a member in
    the role it had, with its data (``rejoin_member``) or without (``wipe_member``)."""

    def leader(self) -> str: ...

    def followers(self) -> list[str]: ...

    def kill_member(self, name: str) -> None: ...

    def rejoin_member(self, name: str, leader: str) -> None: ...

    def wipe_member(self, name: str, leader: str) -> None: ...


def _members(ctx: FaultContext, step: FaultStep) -> MemberFaults:
    cluster = ctx.server
    if not isinstance(cluster, MemberFaults):
        raise FaultUnsupported(f"{step.fault}: the server is a single node, it has no members by role")
    return cluster


def _follower_crash(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    """kill -9 one follower drawn from the seed among those that do not lead *when the fault fires*;
    restart it with its data, following the leader, after the window."""
    cluster = _members(ctx, step)
    leader = cluster.leader()
    followers = sorted(cluster.followers())
    if not followers:
        raise FaultUnsupported(f"{step.fault}: {leader} leads and no other member is running")
    member = ctx.rng.choice(followers)
    target = f"follower:{member}"
    ctx.edge(step, "start", target, member=member, leader=leader)
    cluster.kill_member(member)
    try:
        ctx.rt.sleep(step.duration * ctx.ttl_s)
    finally:
        cluster.rejoin_member(member, leader)
    ctx.edge(step, "end", target, member=member, leader=leader)


def _leader_amnesia(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    """kill -9 the member leading now and restart it at once WITHOUT its data, in its role: sooner
    than the cluster notices it gone (Sentinel's down-after), so no failover happens and the
    others follow the empty leader. The end edge names who leads afterwards (a failover would be
    a different fault: the lock then lives or dies with the promoted replica)."""
    cluster = _members(ctx, step)
    member = cluster.leader()
    target = f"leader:{member}"
    ctx.edge(step, "start", target, member=member)
    cluster.kill_member(member)
    try:
        ctx.rt.sleep(step.duration * ctx.ttl_s)
    finally:
        cluster.wipe_member(member, member)
    ctx.edge(step, "end", target, member=member, leader_after=cluster.leader())


def masters_unsupported(fault: Fault, reach: Reach) -> str | None:
    if reach.in_process or reach.cluster_kind == "redlock":
        return None
    return (f"{fault.name}: {reach.label} has no independent Redlock masters to kill; "
            "use --backend redlock")


def _on_leader(stop: Literal["kill", "pause"]) -> Callable[[Fault, FaultContext, FaultStep], None]:
    """kill -9 or SIGSTOP whichever member leads *now*; restart it with its data, or resume it."""

    def apply(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
        from lockchaos.harness.faults.nemesis import ClusterFaults  # the nemesis imports the registry

        cluster = ctx.server
        if not isinstance(cluster, ClusterFaults):
            raise FaultUnsupported(f"{step.fault}: the server is a single node, it has no leader")
        member = cluster.leader()
        target = f"leader:{member}"
        ctx.edge(step, "start", target, member=member)
        if stop == "kill":
            cluster.kill_member(member)
            try:
                ctx.rt.sleep(step.duration * ctx.ttl_s)
            finally:
                cluster.restart_member(member)
        else:
            cluster.pause_member(member)
            try:
                ctx.rt.sleep(step.duration * ctx.ttl_s)
            finally:
                cluster.resume_member(member)
        ctx.edge(step, "end", target, member=member)

    return apply


def _isolate(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
    """Cut the leader off from its peers while the holder's process still reaches it: the
    holder keeps renewing there, the rest of the cluster elects or promotes another."""
    from lockchaos.harness.faults.nemesis import ClusterFaults, IsolationFaults  # the nemesis imports the registry

    cluster = ctx.server
    if not isinstance(cluster, ClusterFaults):
        raise FaultUnsupported(f"{step.fault}: the server is a single node, it has no leader")
    member = cluster.leader()
    target = f"leader:{member}"
    if not isinstance(cluster, IsolationFaults):
        raise FaultUnsupported(f"{step.fault}: the server cannot isolate a member from its peers")
    holders = [w for w in ctx.pick("holder") if w.believed is not None]
    keep = [pid for w in holders if isinstance(pid := getattr(w, "pid", None), int)]
    if holders and not keep:  # thread workers: one process, the harness's, holds every connection
        if getattr(cluster, "clients_cross_peers", False):
            raise FaultUnsupported(f"{step.fault}: thread workers share one process, so the holder's "
                                   "connections cannot be told from the contenders'; use process workers")
        keep = [os.getpid()]
    holder = ",".join(w.name for w in holders)
    # The holder by name, not by PID: a history must be the same for the same seed.
    ctx.edge(step, "start", target, member=member, holder=holder, kept=len(keep))
    cluster.isolate_member(member, keep)
    try:
        ctx.rt.sleep(step.duration * ctx.ttl_s)
    finally:
        cluster.heal_member(member)
    ctx.edge(step, "end", target, member=member, holder=holder)


def _minority(masters: MasterFaults, ctx: FaultContext, step: FaultStep) -> tuple[list[str], dict[str, Any]]:
    """A minority (2 of 5), drawn from the seed."""
    names = sorted(ctx.rng.sample(masters.masters(), (len(masters.masters()) - 1) // 2))
    return names, {"members": names}


def _amnesia(masters: MasterFaults, ctx: FaultContext, step: FaultStep) -> tuple[list[str], dict[str, Any]]:
    """The holder is paused for ``amount`` TTLs and one master that granted its lock restarts empty:
    with the holder's lock on a bare quorum, the rest become a quorum for a contender."""
    holders = [w for w in ctx.pick("holder") if w.believed is not None]
    for w in holders:  # the worker records the pause when it really stalls
        w.pause_for_s = step.amount * ctx.ttl_s
    granting = masters.granting_masters()
    names = [ctx.rng.choice(granting)] if granting else []
    return names, {"members": names, "holder": ",".join(w.name for w in holders), "granting": granting}


def _on_masters(choose: Callable[[MasterFaults, FaultContext, FaultStep], tuple[list[str], dict[str, Any]]]
                ) -> Callable[[Fault, FaultContext, FaultStep], None]:
    """kill -9 the masters ``choose`` names when the fault fires; restart them empty (no persistence)."""

    def apply(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
        from lockchaos.harness.faults.nemesis import MasterFaults  # the nemesis imports the registry

        masters = ctx.server
        if not isinstance(masters, MasterFaults):
            raise FaultUnsupported(f"{step.fault}: the server has no independent Redlock masters")
        names, detail = choose(masters, ctx, step)
        target = "masters:" + ",".join(names)
        ctx.edge(step, "start", target, **detail)
        try:
            for name in names:
                masters.kill_member(name)
            ctx.rt.sleep(step.duration * ctx.ttl_s)
        finally:
            for name in names:
                masters.restart_member(name)
        ctx.edge(step, "end", target, **detail)

    return apply


LEADER_CRASH = Fault(
    "leader-crash", "cluster-leader", "#06b6d4", _on_leader("kill"),
    soak=(FaultStep(0, "leader-crash", target="server", duration=2),),
    timing=LeaseTiming(failover=True, leader_trigger=True),
    check_support=leader_unsupported,
    description="kill -9 of the member leading now, restarted with its data after the window")
LEADER_PAUSE = Fault(
    "leader-pause", "cluster-leader", "#d946ef", _on_leader("pause"),
    soak=(FaultStep(0, "leader-pause", target="server", duration=1.2),),
    timing=LeaseTiming(failover=True, leader_trigger=True, delays_failover=True),
    check_support=leader_unsupported,
    description="SIGSTOP of the member leading now, resumed after the window")
LEADER_ISOLATED = Fault(
    "leader-isolated", "cluster-leader", "#06b6d4", _isolate,
    soak=(FaultStep(0, "leader-isolated", target="server", duration=3),),
    timing=LeaseTiming(failover=True, timed_failover=True),
    check_support=leader_unsupported,
    description="the member leading now is cut off from its peers (both ways) while the holder still "
                "reaches it; healed after the window")
REDLOCK_MINORITY_KILL = Fault(
    "redlock-minority-kill", "masters", "#06b6d4", _on_masters(_minority),
    soak=(FaultStep(0, "redlock-minority-kill", target="server", duration=1),),
    timing=LeaseTiming(failover=True),
    check_support=masters_unsupported,
    description="kill -9 of a minority of Redlock's masters, restarted empty")
REDLOCK_MASTER_AMNESIA = Fault(
    "redlock-master-amnesia", "masters", "#d946ef", _on_masters(_amnesia),
    soak=(FaultStep(0, "redlock-master-amnesia", target="holder", duration=0.2, amount=1.5),),
    timing=LeaseTiming(failover=True),
    check_support=masters_unsupported,
    description="the holder pauses while one master that granted its lock restarts empty")
FOLLOWER_CRASH = Fault(
    "follower-crash", "cluster-follower", "#14b8a6", _follower_crash,
    soak=(FaultStep(0, "follower-crash", target="server", duration=2),),
    check_support=leader_unsupported,
    description="kill -9 of a member not leading now (drawn from the seed), restarted with its data "
                "after the window")
LEADER_AMNESIA = Fault(
    "leader-amnesia", "cluster-leader", "#a855f7", _leader_amnesia,
    soak=(FaultStep(0, "leader-amnesia", target="server"),),
    # A failover may follow anyway when the restart outlasts Sentinel's down-after (a loaded machine):
    # a lock lost to that promotion is the same declared hazard, not an unexplained loss.
    timing=LeaseTiming(restarts_server=True, server_recovery_trigger=True, excuses_liveness=True, failover=True),
    check_support=amnesia_unsupported,
    description="kill -9 of the member leading now, restarted at once without its data, before the "
                "cluster fails over: a non-durable primary restarted empty, its replicas resync to it")
