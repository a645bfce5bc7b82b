"""The scenario catalogue: backend-agnostic scripts of worker timings and faults, in units of the TTL.

Because every time is a multiple of the TTL, one scenario runs unchanged against the fake at 1 s,
Redis at 1 s and etcd at 2 s, and side-by-side runs at the same TTL mean the same thing. Each
description names the way real lock users have been burnt that the scenario reproduces.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness.faults.fault import FaultStep, FaultTarget
from lockchaos.harness.faults.registry import soak_menu

__all__ = ["CATALOGUE", "FaultStep", "FaultTarget", "Scenario", "WorkerPlan", "fault_kinds", "find_scenario",
           "soak_schedule"]

@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """How a worker uses the lock, in TTLs: a typical leader-election / job-guard loop."""

    hold: float = 2.0  # how long a holder keeps working before it releases
    renew_every: float = 1 / 3  # renew at a third of the TTL, as most lock libraries do
    retry_every: float = 0.1  # a refused acquire is retried after this (plus jitter)
    work_every: float = 0.05  # a holder writes the guarded register this often
    trust_from: Literal["invoke", "completion"] = "invoke"
    """A careful client measures validity from when it *sent* the acquire; a naive one from the reply."""
    observe: bool = False
    """A worker asks ``holder()`` before each acquire, as a follower checking who leads or a dashboard
    does: conformance judges every answer against the leases that can be in force at that moment."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    duration: float  # in TTLs
    workers: int = 3
    plan: WorkerPlan = field(default_factory=WorkerPlan)
    faults: tuple[FaultStep, ...] = ()
    fencing: bool = True
    persistence: bool | None = None
    """Server durability the scenario needs: None = the backend's default, True/False = insist."""
    client_timeout: float | None = None
    """Client call timeout in TTLs, when the scenario depends on it (else the adapter's default)."""
    random_faults: bool = False
    """``soak``: the fault schedule is drawn from the seed for the whole duration."""
    shared_owner: int = 0
    """How many workers are misconfigured to give the lock one and the same owner id."""
    keys: int = 1
    """How many lock keys the workers share: above one, each acquire picks one at random (seeded), each
    key guards a register of its own, and the run measures the server's raw capacity to compare with."""


CATALOGUE: tuple[Scenario, ...] = (
    Scenario("clean-handover",
             "No faults: holders renew, release and hand over; the baseline every backend must pass.",
             duration=6),
    Scenario("holder-crash",
             "The holder's process dies without releasing: another worker must take over after the TTL.",
             duration=8, faults=(FaultStep(1.5, "holder-crash", duration=3),)),
    Scenario("holder-pause",
             "GC pause past the TTL (the classic Redlock critique): the paused holder wakes and writes "
             "with a stale lease; fencing off, so the register accepts it.",
             duration=8, fencing=False, plan=WorkerPlan(hold=5),
             faults=(FaultStep(1.5, "holder-pause", amount=2.5),)),
    Scenario("holder-pause-fenced",
             "The same GC pause with fencing tokens checked by the register: the stale write is refused.",
             duration=8, fencing=True, plan=WorkerPlan(hold=5),
             faults=(FaultStep(1.5, "holder-pause", amount=2.5),)),
    Scenario("renew-races-expiry",
             "Renewals sent just before expiry on a slow link arrive after it: the holder loses the lock "
             "while it thinks it renewed in time.",
             duration=8, plan=WorkerPlan(renew_every=0.9, hold=3),
             faults=(FaultStep(1.0, "latency", target="all", duration=5, amount=0.08),)),
    Scenario("contention",
             "Sixteen workers hammer one key with short holds: exclusion and token order under contention.",
             duration=6, workers=16, plan=WorkerPlan(hold=0.3, retry_every=0.02)),
    Scenario("duplicate-owner",
             "Two processes give the lock the same owner id (hostname as owner, a copied config): only a "
             "lock that is not re-entrant keeps the second one out.",
             duration=6, shared_owner=2),
    Scenario("server-restart",
             "The lock server is killed (-9) and restarted with its default durability: Redis without "
             "persistence forgets the lock and restarts its token counter.",
             duration=8, faults=(FaultStep(2.0, "server-kill", target="server", duration=0.5),)),
    Scenario("server-restart-durable",
             "kill -9 and restart of a server with durable state (Redis AOF fsync always, etcd WAL): "
             "holder and tokens must survive.",
             duration=8, persistence=True,
             faults=(FaultStep(2.0, "server-kill", target="server", duration=0.5),)),
    Scenario("server-pause",
             "The server freezes (SIGSTOP) past the TTL, then resumes: calls time out, leases expire "
             "on resume, clients must not assume either way.",
             duration=8, faults=(FaultStep(2.0, "server-pause", target="server", duration=1.5),)),
    Scenario("partition-holder",
             "The holder is cut off from the server (bytes vanish, connections stay open): split brain "
             "if it keeps working past its validity.",
             duration=9, faults=(FaultStep(1.5, "partition", duration=3),)),
    Scenario("latency",
             "Every link gets a fifth of the TTL of added delay: timeouts, late renewals, slow hand-over.",
             duration=8, faults=(FaultStep(1.0, "latency", target="all", duration=5, amount=0.2),)),
    Scenario("slow-acquire-reply",
             "The acquire reply arrives after the lease has already expired; a client that trusts the "
             "reply time works without a lock.",
             duration=10, workers=2, client_timeout=4, fencing=False,
             plan=WorkerPlan(trust_from="completion", hold=0.3, retry_every=0.3),
             faults=(FaultStep(1.0, "reply-delay", target="random", duration=7, amount=1.3),)),
    Scenario("silent-renewer-death",
             "The renewal thread dies silently while its owner keeps working, trusting it: stale writes "
             "after expiry.",
             duration=8, plan=WorkerPlan(hold=5), fencing=False,
             faults=(FaultStep(1.0, "renewer-death"),)),
    Scenario("release-lost",
             "The release is applied but its reply is lost to a connection reset: the outcome is "
             "unknown, and the key must not stay locked past the TTL.",
             duration=8, faults=(FaultStep(1.0, "lose-release-reply", duration=3),)),
    Scenario("release-request-lost",
             "The holder's release never reaches the server (its link drops every byte until the call "
             "gives up, a quarter TTL): the lease stays until its TTL while contenders poll. The outcome "
             "is unknown; a client that reports \"released\" sends them to a key that is still held.",
             duration=12, workers=3, client_timeout=0.25,
             faults=tuple(FaultStep(at, "lose-release-request") for at in (1.0, 4.0, 7.0))),
    Scenario("renew-request-lost",
             "For 1.5 TTLs no renew of the holder reaches the server (its link drops every byte of each "
             "until the call gives up, a quarter TTL) while contenders poll: the lease ends at its old "
             "end. A client that reports the extensions it never got keeps its holder working beside "
             "the next one.",
             duration=12, workers=3, client_timeout=0.25,
             faults=tuple(FaultStep(at, "lose-renew-request", duration=1.5) for at in (1.0, 4.0, 7.0))),
    Scenario("acquire-interrupted",
             "Connections are reset while acquires are in flight: an acquire that fails midway must "
             "leak neither a lease nor a key.",
             duration=8, plan=WorkerPlan(hold=0.5, retry_every=0.05),
             faults=(FaultStep(1.0, "reset-storm", target="all", duration=4, amount=0.05),)),
    Scenario("clock-jump",
             "The server's clock jumps forward past the TTL: leases expire early while holders still "
             "believe in them (only where a clock fault can reach the server).",
             duration=8, faults=(FaultStep(3.0, "clock-jump", target="server", amount=2.0),)),
    Scenario("resurrecting-renew",
             "A lone holder pauses past its TTL and nobody contends: it wakes to its expired key still "
             "free, and its renew must fail; a \"self-healing\" renew that re-creates the lock is caught.",
             duration=10, workers=1, plan=WorkerPlan(hold=6),
             faults=(FaultStep(1.5, "holder-pause", amount=2.5),)),
    Scenario("two-step-release",
             "The holder releases right at its lease's end over a slowed link, while contenders poll: a "
             "check-then-delete release in two round trips deletes the next holder's lock.",
             duration=12, workers=4, plan=WorkerPlan(hold=0.5, retry_every=0.02),
             faults=tuple(FaultStep(at, "late-release", amount=0.2) for at in (1.0, 3.5, 6.0, 8.5))),
    Scenario("hidden-acquire-retry",
             "A lone worker's acquire takes effect but its reply is lost to a connection reset: the "
             "outcome is unknown, never \"not acquired\" (an internal retry that finds its own lock).",
             duration=10, workers=1, plan=WorkerPlan(hold=0.5, retry_every=0.2),
             faults=tuple(FaultStep(at, "lose-acquire-reply", target="random") for at in (1.0, 3.5, 6.0, 8.5))),
    Scenario("under-declared-lag",
             "Holders crash and contenders poll every fiftieth of a TTL around each expiry: a key still "
             "visible after TTL + declared expiry lag is caught (a backend declaring too short a lag).",
             duration=12, workers=4, plan=WorkerPlan(hold=1, retry_every=0.02),
             faults=tuple(FaultStep(at, "holder-crash", duration=1.5) for at in (1.5, 4.5, 7.5))),
    Scenario("holder-observed",
             "Workers ask holder() before every try (a follower checking who leads, a dashboard) while "
             "holders hand over, crash and pause past the TTL: every answer must name a lease that can be "
             "in force then (a cached or stale answer is caught), and none may miss one surely in force.",
             duration=10, plan=WorkerPlan(observe=True, hold=1, retry_every=0.05),
             faults=(FaultStep(1.5, "holder-crash", duration=2), FaultStep(5.5, "holder-pause", amount=2))),
    Scenario("leader-crash",
             "The cluster's leader (etcd) or primary (Sentinel) is killed -9 while a client holds the lock, "
             "and restarted with its data three TTLs later, once a new one has taken over: the lock must "
             "survive the election (a promoted asynchronous replica may never have received it).",
             duration=9, faults=(FaultStep(2.0, "leader-crash", target="server", duration=3.0),)),
    Scenario("leader-pause",
             "The leader or primary freezes (SIGSTOP) past the TTL, then resumes: a new one takes over "
             "meanwhile; calls stuck on the frozen one time out, and on resume it must not act as leader.",
             duration=10, faults=(FaultStep(2.0, "leader-pause", target="server", duration=1.5),)),
    Scenario("leader-isolated",
             "The leader or primary is cut off from its peers (both ways, on the cluster's own links) while "
             "the holder's client still reaches it; the others elect a new leader or promote a replica and "
             "the contenders go there: the holder keeps renewing on the old one (Jepsen's Redis split brain, "
             "2013). Healed four TTLs later; an etcd leader without quorum steps down and grants nothing.",
             duration=10, plan=WorkerPlan(hold=8),
             faults=(FaultStep(1.5, "leader-isolated", target="server", duration=4.0),)),
    Scenario("follower-crash",
             "A member that is not leading when the fault fires (etcd follower, Sentinel replica; drawn from "
             "the seed) is killed -9 while a client holds the lock and restarted with its data three TTLs "
             "later: the leader keeps serving, nothing may be lost, contenders keep being refused.",
             duration=9, plan=WorkerPlan(hold=5),
             faults=(FaultStep(2.0, "follower-crash", target="server", duration=3.0),)),
    Scenario("leader-amnesia",
             "The leader or primary is killed -9 and restarted at once WITHOUT its data, before the cluster "
             "notices (Sentinel's down-after is longer than the restart): no failover, the replicas resync "
             "from the empty primary and the holder's lock is gone everywhere; contenders get it while the "
             "holder still believes it holds (Redis's documented hazard without persistence). An etcd "
             "member cannot restart empty: it is removed and re-added as a new member, and Raft keeps the lock.",
             duration=8, plan=WorkerPlan(hold=5),
             faults=(FaultStep(2.0, "leader-amnesia", target="server"),)),
    Scenario("redlock-master-amnesia",
             "Redlock over five masters without persistence (Kleppmann, 2016): two masters restart empty, "
             "leaving the holder's lock on a bare quorum of three; then the holder pauses while one of "
             "those three restarts empty, and a contender reaches a quorum on the three that forgot: "
             "two holders at once. Two workers: three contenders can split five masters 2-2-1 and all "
             "be refused, a Redlock split vote that would hide what this scenario is about.",
             duration=8, workers=2, plan=WorkerPlan(hold=6),
             faults=(FaultStep(0.5, "redlock-minority-kill", target="server", duration=0.3),
                     FaultStep(2.0, "redlock-master-amnesia", target="holder", duration=0.1, amount=1.5))),
    Scenario("soak",
             "The nightly job: a seeded random mix of every fault for the whole duration.",
             duration=30, workers=5, random_faults=True,
             # Contenders poll at under a TTL: fast enough to measure failover, few enough events that
             # an hour with sixteen workers stays a file of a few MB (the contention scenario hammers).
             plan=WorkerPlan(retry_every=0.4, work_every=0.1)),
    Scenario("stress",
             "Races hide at load, not at 24 ops/s: many workers on many keys, each acquire on a key drawn "
             "at random, holds of a five-hundredth of a TTL and no think time, with the soak's random faults; "
             "reports the ops/s driven next to the server's raw capacity.",
             duration=8, workers=32, keys=64, random_faults=True,
             # Retries and writes are short but never zero: on virtual time a zero wait would not advance
             # the clock, and a lock user that never sleeps is not a user but a benchmark.
             plan=WorkerPlan(hold=0.002, retry_every=0.0005, work_every=0.002)),
)

# Faults the soak draws from, with their typical duration/amount in TTLs: each fault's own
# soak steps, in the registry's order (``harness/faults/registry.py``).
_SOAK_MENU: tuple[FaultStep, ...] = soak_menu()


def soak_schedule(duration: float, seed: int, kinds: set[str] | None = None) -> Iterator[FaultStep]:
    """A seeded random schedule: a fault every 2-4 TTLs, each from the menu (optionally filtered).

    Drawn lazily, in order of start, as the nemesis reaches each fault: a month-long soak holds one
    step at a time, and starts at once instead of first building hundreds of thousands of them.
    """
    rng = random.Random(seed)
    menu = [s for s in _SOAK_MENU if kinds is None or s.fault in kinds]
    t = 1.0 + rng.uniform(0, 1)
    while menu and t < duration - 1:
        step = replace(rng.choice(menu), at=round(t, 3))
        yield step
        t += step.duration + rng.uniform(2, 4)


def find_scenario(name: str) -> Scenario:
    for s in CATALOGUE:
        if s.name == name:
            return s
    raise ConfigurationError(f"unknown scenario {name!r}; `lockchaos scenarios` lists them")


def fault_kinds(scenario: Scenario) -> set[str]:
    steps = _SOAK_MENU if scenario.random_faults else scenario.faults
    return {s.fault for s in steps}
