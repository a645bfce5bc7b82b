"""The nemesis: runs a scenario's fault schedule against the server, the links and the workers.

Each fault is recorded with a start and an end in the history. A fault the environment cannot take
(a clock jump on a real server process, a network fault on an in-process adapter) is discovered
before the run starts, so the scenario is skipped with the reason instead of passing untested.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from lockchaos.backends.base import ConfigurationError, FaultUnsupported, Lease
from lockchaos.harness.faults.fault import FaultStep, TargetKind
from lockchaos.harness.faults.registry import FAULTS, lookup
from lockchaos.harness.run.history import FaultRecord, Record
from lockchaos.harness.run.runtime import Runtime
from lockchaos.harness.run.worker import LinkFaults
from lockchaos.harness.servers.handle import ServerFaults as ServerFaults  # the fault part of ServerHandle

NS = 1_000_000_000


class HolderFaults(Protocol):
    """A worker as the nemesis faults it: a thread ``Worker`` or a ``ProcessWorker``.

    On a process, ``crash`` is kill -9 and an armed pause is a SIGSTOP of the whole process.
    """

    @property
    def name(self) -> str: ...

    crashed: bool
    believed: Lease | None
    link: LinkFaults | None
    pause_for_s: float
    renewer_dead: bool
    lose_release_reply: bool
    late_release_ms: int
    lose_acquire_reply: bool
    lose_release_request: bool
    lose_renew_requests_s: float

    def crash(self) -> None: ...

    def revive(self) -> None: ...


@runtime_checkable
class ClusterFaults(Protocol):
    """Faults on a cluster's roles: the leader is resolved when the fault fires, members by name."""

    def leader(self) -> str: ...

    def kill_member(self, name: str) -> None: ...

    def restart_member(self, name: str) -> None: ...

    def pause_member(self, name: str) -> None: ...

    def resume_member(self, name: str) -> None: ...


@runtime_checkable
class IsolationFaults(Protocol):
    """Cutting a member off from its peers (both ways, real bytes) while chosen client processes
    still reach it; healed by name."""

    def leader(self) -> str: ...

    def isolate_member(self, name: str, keep_pids: Collection[int] = ()) -> None: ...

    def heal_member(self, name: str) -> None: ...


@runtime_checkable
class MasterFaults(Protocol):
    """Faults on Redlock's independent masters, by name; a restarted master comes back empty."""

    def masters(self) -> list[str]: ...

    def granting_masters(self) -> list[str]: ...

    def kill_member(self, name: str) -> None: ...

    def restart_member(self, name: str) -> None: ...


def _targeting(*kinds: TargetKind) -> set[str]:
    return {f.name for f in FAULTS.values() if f.target in kinds}


# The faults by target, derived from the registry (``registry.py``), for modules that ask by kind.
SERVER_FAULTS = _targeting("server", "clock")
REDLOCK_FAULTS = _targeting("masters")
"""Redlock's: kill -9 a minority of its masters; restart one that granted the holder's lock, emptied."""
CLUSTER_FAULTS = _targeting("cluster-leader", "cluster-follower", "masters")
LINK_FAULTS = _targeting("link")
WORKER_FAULTS = _targeting("holder")


class Nemesis:
    """Applies each step by its registered fault (``registry.lookup``): the fault records its edges."""

    def __init__(
        self,
        steps: Iterable[FaultStep],
        *,
        ttl_ms: int,
        runtime: Runtime,
        record: Callable[[Record], None],
        server: ServerFaults,
        workers: Sequence[HolderFaults],
        rng: random.Random,
    ) -> None:
        # A fixed list is sorted here; an iterator (the soak's lazy schedule) is drawn in order of start.
        self.steps: Iterable[FaultStep] = sorted(steps, key=lambda s: s.at) if isinstance(steps, Sequence) else steps
        self.ttl_s = ttl_ms / 1000
        self.rt = runtime
        self._record = record
        self.server = server
        self.workers = list(workers)
        self.rng = rng
        self.t0 = runtime.now_ns()

    def edge(self, step: FaultStep, phase: str, target: str, **detail: Any) -> None:
        self._record(FaultRecord(fault=step.fault, phase=phase, target=target,  # type: ignore[arg-type]
                                 time_ns=self.rt.now_ns(), detail=detail))

    def _sleep_until(self, at_ttls: float) -> None:
        delay = self.t0 + at_ttls * self.ttl_s * NS - self.rt.now_ns()
        if delay > 0:
            self.rt.sleep(delay / NS)

    def run(self) -> None:
        for step in self.steps:
            self._sleep_until(step.at)
            self._apply(step)

    def pick(self, target: str) -> list[HolderFaults]:
        alive = [w for w in self.workers if not w.crashed]
        if not alive:
            return []
        if target == "all":
            return alive
        if target == "holder":
            # Wait a bounded while for someone to hold the lock: holder faults are about the holder.
            for _ in range(40):
                holders = [w for w in alive if w.believed is not None]
                if holders:
                    return [holders[0]]
                self.rt.sleep(self.ttl_s / 20)
        return [self.rng.choice(alive)]

    def _apply(self, step: FaultStep) -> None:
        try:
            fault = lookup(step.fault)
        except ConfigurationError as e:
            raise FaultUnsupported(str(e)) from None
        fault.apply(self, step)

    def links(self, workers: Sequence[HolderFaults]) -> list[LinkFaults]:
        links = [w.link for w in workers if w.link is not None]
        if len(links) != len(workers):
            raise FaultUnsupported("a worker has no fault-injectable link")
        return links
