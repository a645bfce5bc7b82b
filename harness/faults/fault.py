"""What one fault is: the ``Fault`` object every fault module defines, and the seams it acts through.

A fault holds everything the harness needs to know about it in one place (the pattern of etcd's
robustness ``Failpoint`` list): what it targets, what the soak draws, how the nemesis applies and
heals it, which environments can take it, what it means for lease timing and its colour in the
report. The registry (``registry.py``) collects them; nobody else names a fault by a string.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from lockchaos.harness.faults.nemesis import HolderFaults, ServerFaults
    from lockchaos.harness.run.runtime import Runtime
    from lockchaos.harness.run.worker import LinkFaults

FaultTarget = Literal["holder", "server", "all", "random"]
"""Whom a scheduled step hits: the holder, the server, every worker, or one drawn from the seed (not a
``run.targets.Target``, which is the backend a run is pointed at)."""

TargetKind = Literal["holder", "link", "server", "clock", "cluster-leader", "cluster-follower", "masters"]
"""What a fault acts on: a worker, a worker's network link, the server process, the server's clock,
a cluster's current leader (or primary) or one of its followers, or Redlock's independent masters."""


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One fault: start ``at`` TTLs into the run, last ``duration`` TTLs, with a fault-specific ``amount``."""

    at: float
    fault: str
    target: FaultTarget = "holder"
    duration: float = 0.0
    amount: float = 0.0


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """What a fault's window means to the checkers' lease timing (read instead of fault names).

    Every flag defaults to "nothing": a fault that only hurts clients (a reset, a lost reply) leaves
    the server's lease clock alone.
    """

    restarts_server: bool = False
    """The server process is killed and restarted: a non-durable one forgets every lease (ends
    them early, restarts its token counter), a durable one resumes them a TTL later at most."""
    ends_leases_early: bool = False
    """Leases may end before their TTL whatever the server's durability (a clock jump)."""
    freezes_server: bool = False
    """The server stops serving and resumes: requests queue in its socket and apply on resume,
    and whatever was in force when it froze is prolonged to the end of the window."""
    delays_requests: bool = False
    """A request may take effect up to the window's ``one_way_ms`` after its reply (added latency)."""
    failover: bool = False
    """A cluster fault that may hand the lock service to another member (or master quorum)."""
    delays_failover: bool = False
    """Counted with the delaying faults (a frozen leader), though no horizon bound comes from it."""
    kills_holder: bool = False
    """The holder dies: its renewer stops for good, its slow calls are excused."""
    freezes_holder: bool = False
    """The holder stalls: its slow calls are excused; a SIGSTOP outlasting the lease stops its renewer."""
    liveness_trigger: bool = False
    """A holder fault after which another client must get the lock within the failover bound."""
    server_recovery_trigger: bool = False
    """After the window, clients must be answered again and the lock granted within the recovery bound."""
    leader_trigger: bool = False
    """A leader fault timed as the service's own failover (to its first grant after the fault)."""
    timed_failover: bool = False
    """A leader fault whose failover is timed like a trigger's and reported (``leader_p50_s``...), not
    judged: when clients notice depends on their own timeouts, not on the service's declared time."""
    excuses_liveness: bool = False
    """A server-side fault overlapping a holder's failover: that failover is reported, not judged."""


@dataclass(frozen=True, slots=True)
class Reach:
    """What an environment lets faults reach: each fault's support check reads it for its skip reason."""

    label: str
    """The target's label, for messages."""
    server_kind: str
    """``fake``, ``redis``, ``etcd``, ``redis-sentinel``...: the server faults land on."""
    in_process: bool
    """The in-process fake: server, clock and cluster faults reach it through its own hooks."""
    faultable_links: bool
    """Every worker reaches the server through a link of its own the nemesis can fault."""
    started_here: bool = True
    """The harness started the server (it may kill and pause it), not the user (``--url``)."""
    cluster_kind: str | None = None
    """The kind of the cluster the harness started (``etcd-cluster``, ``redlock``...), else None."""
    remote: bool = False
    """The server is on another machine (the fault proxy forwards to 127.0.0.1 only)."""
    clock_faults: bool = False
    """The server was launched with a clock the harness can step (Redis under libfaketime)."""
    clock_missing: str | None = None
    """Why a server that could have been launched so was not (libfaketime is missing), else None."""
    wipe_refused: str | None = None
    """Why the cluster cannot restart a member without its data (etcd, containers), else None."""


class FaultContext(Protocol):
    """The nemesis as a fault sees it while applying: the run's clock and the things it can hit."""

    ttl_s: float
    rt: Runtime
    server: ServerFaults
    rng: random.Random

    def edge(self, step: FaultStep, phase: str, target: str, **detail: Any) -> None:
        """Record one edge (start or end) of the fault's window in the history."""
        ...

    def pick(self, target: str) -> list[HolderFaults]:
        """The workers ``target`` names among the living (empty when none is alive)."""
        ...

    def links(self, workers: Sequence[HolderFaults]) -> list[LinkFaults]:
        """The workers' links; raises ``FaultUnsupported`` if one has none."""
        ...


Apply = Callable[["Fault", FaultContext, FaultStep], None]
"""Apply one step of the fault and heal it (or arm the worker that records it); record its edges."""
Unsupported = Callable[["Fault", Reach], "str | None"]
"""Why an environment cannot take the fault (the scenario is skipped with it), or None."""


def always_supported(fault: Fault, reach: Reach) -> str | None:
    """Faults on the harness's own workers reach every environment."""
    return None


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault, everything about it: see the module docstring."""

    name: str
    target: TargetKind
    colour: str
    """Its colour in the report's timeline and legend (a CSS colour)."""
    apply_step: Apply
    soak: tuple[FaultStep, ...] = ()
    """The steps the soak draws this fault as (their ``at`` is replaced); empty: never drawn."""
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    check_support: Unsupported = always_supported
    description: str = ""

    def apply(self, ctx: FaultContext, step: FaultStep) -> None:
        self.apply_step(self, ctx, step)

    def unsupported(self, reach: Reach) -> str | None:
        """The skip reason when ``reach`` cannot take this fault, else None."""
        return self.check_support(self, reach)
