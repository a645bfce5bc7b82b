"""Contract rules for what a cluster backend declares about failover: its time and its replication.

``Capabilities.failover_ms`` and ``Capabilities.replication`` are claims like any other, and the soak
judges runs by them (liveness against the declared failover time, a lost lock as a failure or as the
declared hazard). These rules check the claims themselves on the cluster the contract was given:
the leader (or primary) is killed by ``kill -9`` and, where the rule says so, first cut off from its
peers, then restarted with its data so that the next rule finds a leader. The plain kill runs first,
on the cluster as the other rules left it: a member restarted without persistence rejoins empty,
and a Sentinel group demotes a returning primary only ~9 s later, so a later kill there judges a
group still settling (that is real Sentinel behaviour, and asynchronous replication declares it).

They apply only when the server control reaches a cluster (``ReachesCluster``) whose leader can be
named; on a single server, a server the harness did not start, or a cluster without a leader
(Redlock's independent masters) they are skipped with the reason. As elsewhere, a probe whose
window a loaded machine pushed past the point where the answer is forced is inconclusive, and the
rule is retried on a fresh key.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable

from lockchaos.backends.base import FaultUnsupported, InfrastructureError, LockBackend, LockChaosError
from lockchaos.backends.clock import NS_PER_MS
from lockchaos.harness.contract.context import (
    ClusterControl,
    ContractContext,
    ContractFailure,
    Inconclusive,
    ReachesCluster,
    RuleSkipped,
    Timed,
)
from lockchaos.harness.contract.rules import _granted, _lease, rule

RETRY_PAUSE_S = 0.01
"""Between two attempts while the cluster fails over: often enough to time the failover closely."""
SLACK_SHARE = 10
"""Scheduling slack on a declared failover time: the context's slack plus a tenth of the declaration
(election timers and our own calls run late on a loaded machine; an order of magnitude does not)."""


def _cluster(ctx: ContractContext) -> tuple[ClusterControl, str]:
    """The cluster's control and its current leader, or the reason the rule does not apply."""
    if ctx.caps.replication == "none":
        raise RuleSkipped("the backend declares replication='none': one server, no failover to judge")
    cluster = ctx.server.cluster_control() if isinstance(ctx.server, ReachesCluster) else None
    if cluster is None:
        raise RuleSkipped("no cluster control: the contract was not given a cluster it may fault member by member")
    try:
        return cluster, cluster.leader()
    except (FaultUnsupported, InfrastructureError) as exc:
        raise RuleSkipped(f"the server control cannot reach a leader: {exc}") from None


def _slack_ms(ctx: ContractContext) -> int:
    return ctx.slack_ms + ctx.caps.failover_ms // SLACK_SHARE


def _warm(ctx: ContractContext, c: LockBackend) -> None:
    """One grant and release before the fault, so the client is connected as a running one would be."""
    key, owner = ctx.key("warm-up"), ctx.owner("warm")
    _granted(ctx, c, key, owner, ctx.ttl_ms)
    c.release(key, owner)


def _attempt(ctx: ContractContext, call: Callable[[], object]) -> Timed:
    """One call while the cluster fails over: an unavailable service is an answer too (the error)."""
    start = ctx.now_ns()
    try:
        value: object = call()
    except LockChaosError as exc:
        value = exc
    return Timed(start, ctx.now_ns(), value)


def _restore(cluster: ClusterControl, name: str, *, killed: bool, isolated: bool) -> None:
    """Heal, wait for the cluster to have failed over, then restart the faulted member (with its data)
    and wait for a leader again. Restarted before the failover, a member could answer in its old
    place while the others still name it (a Sentinel group then keeps naming a node that came back
    as a replica, and never fails over)."""
    if isolated:
        cluster.heal_member(name)
    if killed:
        with contextlib.suppress(InfrastructureError):  # restarted all the same: never leave it down
            cluster.leader()
        cluster.restart_member(name)
    with contextlib.suppress(InfrastructureError):  # the next rule skips, with the reason, if none comes
        cluster.leader()


def _ms(ns: int) -> float:
    return ns / NS_PER_MS


def _contend(ctx: ContractContext, b: LockBackend, key: str, held: Timed, ttl: int, kill: Timed,
             what: str) -> None:
    """A contender asks for ``key`` until the failed-over cluster answers; judged by the declared
    replication: a grant while the first lease is surely in force is a lost lock."""
    bound_ns = kill.complete_ns + (ctx.caps.failover_ms + _slack_ms(ctx)) * NS_PER_MS
    early_ns = ctx.earliest_expiry_ns(held, ttl)
    while True:
        answer = _attempt(ctx, lambda: b.acquire(key, ctx.owner("contender"), ttl))
        if not isinstance(answer.value, Exception):
            break
        if answer.invoke_ns > bound_ns:
            raise ContractFailure(f"{what}: no answer to a contender within the declared failover_ms="
                                  f"{ctx.caps.failover_ms} (+ slack) after the kill; last: {answer.value!r}")
        time.sleep(RETRY_PAUSE_S)
    if answer.complete_ns >= early_ns:
        raise Inconclusive("the contender's answer came after the holder's lease could have expired")
    if answer.value is None:
        return
    lost = (f"{what}: lock lost on promotion: a contender was granted {answer.value!r} while "
            f"{_lease(held)!r} was in force")
    if ctx.caps.replication == "linearizable":
        raise ContractFailure(f"{lost}, yet the backend declares replication='linearizable'")
    raise RuleSkipped(f"{lost}: the declared hazard of replication={ctx.caps.replication!r} (informational)")


@rule
def declared_replication_keeps_a_grant_across_leader_kill(ctx: ContractContext) -> None:
    """A lock granted right before the leader is killed still refuses a contender after the failover
    (linearizable replication); with asynchronous replication losing it is the declared hazard."""
    cluster, leader = _cluster(ctx)
    a, b = ctx.client(), ctx.client()
    _warm(ctx, a)
    _warm(ctx, b)
    key = ctx.key("kept-across-kill")
    ttl = ctx.ttl_with_room(ctx.caps.failover_ms + 2 * _slack_ms(ctx))
    held = _granted(ctx, a, key, ctx.owner("holder"), ttl)
    killed = False
    try:
        kill = ctx.timed(lambda: cluster.kill_member(leader))
        killed = True
        _contend(ctx, b, key, held, ttl, kill, f"granted, then leader {leader!r} killed")
    finally:
        _restore(cluster, leader, killed=killed, isolated=False)


@rule
def declared_replication_keeps_a_grant_acknowledged_by_a_cut_off_leader(ctx: ContractContext) -> None:
    """A lock acknowledged by a leader cut off from its peers, killed right after, still refuses a
    contender after the failover (linearizable); losing it is the declared hazard of async replication."""
    cluster, leader = _cluster(ctx)
    a, b = ctx.client(), ctx.client()
    _warm(ctx, a)
    _warm(ctx, b)
    key = ctx.key("kept-cut-off")
    ttl = ctx.ttl_with_room(ctx.caps.failover_ms + 2 * _slack_ms(ctx))
    killed = isolated = False
    try:
        # This process's connections still reach the leader (where clients cross its peer proxy).
        cluster.isolate_member(leader, keep_pids=(os.getpid(),))
        isolated = True
        held = _attempt(ctx, lambda: a.acquire(key, ctx.owner("holder"), ttl))
        kill = ctx.timed(lambda: cluster.kill_member(leader))
        killed = True
        cluster.heal_member(leader)
        isolated = False
        if held.value is None or isinstance(held.value, Exception):
            return  # not acknowledged without its peers, as linearizable replication must: nothing to lose
        _contend(ctx, b, key, held, ttl, kill, f"acknowledged by leader {leader!r} cut off from its peers, then killed")
    except FaultUnsupported as exc:
        raise RuleSkipped(f"the cluster cannot cut its leader off from its peers: {exc}") from None
    finally:
        _restore(cluster, leader, killed=killed, isolated=isolated)


@rule
def declared_failover_time_holds(ctx: ContractContext) -> None:
    """After the leader or primary is killed, a new owner is granted a fresh key within the declared failover_ms."""
    cluster, leader = _cluster(ctx)
    c = ctx.client()
    _warm(ctx, c)
    killed = False
    try:
        kill = ctx.timed(lambda: cluster.kill_member(leader))
        killed = True
        declared = ctx.caps.failover_ms
        bound_ns = kill.complete_ns + (declared + _slack_ms(ctx)) * NS_PER_MS
        attempts = 0
        while True:
            key, owner = ctx.key("failover"), ctx.owner(f"new{attempts}")
            attempts += 1
            attempt = _attempt(ctx, functools.partial(c.acquire, key, owner, ctx.ttl_ms))
            granted = attempt.value is not None and not isinstance(attempt.value, Exception)
            # Judged, as the soak's failover time is, by when the first grant is *seen*: a call stuck
            # on the dead leader until the client's timeout is part of what failover_ms declares.
            if granted and attempt.complete_ns <= bound_ns:
                return
            if attempt.complete_ns > bound_ns:
                raise ContractFailure(
                    f"killed leader {leader!r}: no grant of a fresh key was seen within the declared "
                    f"failover_ms={declared} (+ {_slack_ms(ctx)} ms slack); attempt {attempts} completed "
                    f"{_ms(attempt.complete_ns - kill.complete_ns):.0f} ms after the kill with {attempt.value!r}")
            time.sleep(RETRY_PAUSE_S)
    finally:
        _restore(cluster, leader, killed=killed, isolated=False)


CLUSTER_ONLY_RULES = (declared_replication_keeps_a_grant_across_leader_kill.__name__,
                      declared_replication_keeps_a_grant_acknowledged_by_a_cut_off_leader.__name__,
                      declared_failover_time_holds.__name__)
"""Rules that judge a cluster's failover: on a single server they skip, by nature, every time."""
