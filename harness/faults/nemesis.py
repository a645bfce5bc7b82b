"""The nemesis: runs a scenario's fault schedule against the server, the links and the workers.

Each fault is recorded with a start and an end in the history. A fault the environment cannot take
(a clock jump on a real server process, a network fault on an in-process adapter) is discovered
before the run starts, so the scenario is skipped with the reason instead of passing untested.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from lockchaos.backends.base import FaultUnsupported, Lease
from lockchaos.harness.run.history import FaultRecord, Record
from lockchaos.harness.run.runtime import Runtime
from lockchaos.harness.run.worker import LinkFaults
from lockchaos.harness.scenarios import FaultStep
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


SERVER_FAULTS = {"server-kill", "server-pause", "clock-jump"}
REDLOCK_FAULTS = {"redlock-minority-kill", "redlock-master-amnesia"}
"""Redlock's: kill -9 a minority of its masters; restart one that granted the holder's lock, emptied."""
CLUSTER_FAULTS = {"leader-crash", "leader-pause", "leader-isolated", *REDLOCK_FAULTS}
LINK_FAULTS = {"partition", "latency", "reply-delay", "reset-storm", "lose-release-reply", "late-release",
               "lose-acquire-reply"}
WORKER_FAULTS = {"holder-crash", "holder-pause", "renewer-death"}


class Nemesis:
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

    def _edge(self, step: FaultStep, phase: str, target: str, **detail: Any) -> None:
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

    def _pick(self, target: str) -> list[HolderFaults]:
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
        duration = step.duration * self.ttl_s
        if step.fault in SERVER_FAULTS:
            self._server_fault(step, duration)
            return
        if step.fault in REDLOCK_FAULTS:
            self._redlock_fault(step, duration)
            return
        if step.fault in CLUSTER_FAULTS:
            self._cluster_fault(step, duration)
            return
        workers = self._pick(step.target)
        if not workers:
            return
        names = ",".join(w.name for w in workers)
        if step.fault == "holder-crash":
            self._edge(step, "start", names)
            for w in workers:
                w.crash()
            try:
                self.rt.sleep(duration)
            finally:
                for w in workers:
                    w.revive()
            self._edge(step, "end", names)
        elif step.fault == "holder-pause":
            for w in workers:  # the worker records the pause when it really stalls
                w.pause_for_s = step.amount * self.ttl_s
        elif step.fault == "renewer-death":
            self._edge(step, "start", names)
            for w in workers:
                w.renewer_dead = True
            self._edge(step, "end", names, note="the renewer never comes back in this incarnation")
        elif step.fault == "lose-release-reply":
            for w in workers:  # recorded by the worker around the release it strikes
                w.lose_release_reply = True
        elif step.fault == "late-release":
            for w in workers:  # recorded by the worker around its release at the lease's end
                w.late_release_ms = max(1, round(step.amount * self.ttl_s * 1000))
        elif step.fault == "lose-acquire-reply":
            for w in workers:  # recorded by the worker around the acquire it strikes
                w.lose_acquire_reply = True
        else:
            self._link_fault(step, workers, names, duration)

    def _links(self, workers: Sequence[HolderFaults]) -> list[LinkFaults]:
        links = [w.link for w in workers if w.link is not None]
        if len(links) != len(workers):
            raise FaultUnsupported("a worker has no fault-injectable link")
        return links

    def _link_fault(self, step: FaultStep, workers: Sequence[HolderFaults], names: str, duration: float) -> None:
        links = self._links(workers)
        if step.fault == "partition":
            self._edge(step, "start", names)
            for link in links:
                link.partition()
            try:
                self.rt.sleep(duration)
            finally:
                for link in links:
                    link.heal()
        elif step.fault == "latency":
            delay_ms = round(step.amount * self.ttl_s * 1000)
            self._edge(step, "start", names, one_way_ms=delay_ms)
            for link in links:
                link.set_latency(delay_ms)
            try:
                self.rt.sleep(duration)
            finally:
                for link in links:
                    link.set_latency(0)
        elif step.fault == "reply-delay":
            delay_ms = round(step.amount * self.ttl_s * 1000)
            self._edge(step, "start", names, reply_delay_ms=delay_ms)
            for link in links:
                link.delay_replies(delay_ms)
            try:
                self.rt.sleep(duration)
            finally:
                for link in links:
                    link.delay_replies(0)
        elif step.fault == "reset-storm":
            every = max(step.amount * self.ttl_s, 0.001)
            self._edge(step, "start", names, every_s=every)
            end = self.rt.now_ns() + duration * NS
            while self.rt.now_ns() < end:
                for link in links:
                    link.reset()
                self.rt.sleep(every)
        else:
            raise FaultUnsupported(f"unknown fault {step.fault!r}")
        self._edge(step, "end", names)

    def _server_fault(self, step: FaultStep, duration: float) -> None:
        if step.fault == "server-kill":
            self._edge(step, "start", "server")
            self.server.kill()
            try:
                self.rt.sleep(duration)
            finally:
                self.server.restart()
        elif step.fault == "server-pause":
            self._edge(step, "start", "server")
            self.server.pause()
            try:
                self.rt.sleep(duration)
            finally:
                self.server.resume()
        elif step.fault == "clock-jump":
            delta_ms = round(step.amount * self.ttl_s * 1000)
            self._edge(step, "start", "server", delta_ms=delta_ms)
            self.server.jump_clock(delta_ms)
        self._edge(step, "end", "server")

    def _cluster_fault(self, step: FaultStep, duration: float) -> None:
        """kill -9 or SIGSTOP whichever member leads *now*; restart it with its data, or resume it."""
        cluster = self.server
        if not isinstance(cluster, ClusterFaults):
            raise FaultUnsupported(f"{step.fault}: the server is a single node, it has no leader")
        member = cluster.leader()
        target = f"leader:{member}"
        if step.fault == "leader-isolated":
            self._isolate(step, duration, member, target)
            return
        self._edge(step, "start", target, member=member)
        if step.fault == "leader-crash":
            cluster.kill_member(member)
            try:
                self.rt.sleep(duration)
            finally:
                cluster.restart_member(member)
        else:
            cluster.pause_member(member)
            try:
                self.rt.sleep(duration)
            finally:
                cluster.resume_member(member)
        self._edge(step, "end", target, member=member)

    def _isolate(self, step: FaultStep, duration: float, member: str, target: str) -> None:
        """Cut the leader off from its peers while the holder's process still reaches it: the
        holder keeps renewing there, the rest of the cluster elects or promotes another."""
        cluster = self.server
        if not isinstance(cluster, IsolationFaults):
            raise FaultUnsupported(f"{step.fault}: the server cannot isolate a member from its peers")
        holders = [w for w in self._pick("holder") if w.believed is not None]
        keep = [pid for w in holders if isinstance(pid := getattr(w, "pid", None), int)]
        if holders and not keep:  # thread workers: one process, the harness's, holds every connection
            if getattr(cluster, "clients_cross_peers", False):
                raise FaultUnsupported(f"{step.fault}: thread workers share one process, so the holder's "
                                       "connections cannot be told from the contenders'; use process workers")
            keep = [os.getpid()]
        holder = ",".join(w.name for w in holders)
        self._edge(step, "start", target, member=member, holder=holder, kept_pids=keep)
        cluster.isolate_member(member, keep)
        try:
            self.rt.sleep(duration)
        finally:
            cluster.heal_member(member)
        self._edge(step, "end", target, member=member, holder=holder)

    def _redlock_fault(self, step: FaultStep, duration: float) -> None:
        """kill -9 masters and restart them empty (no persistence), resolved when the fault fires.

        ``redlock-minority-kill``: a minority (2 of 5), drawn from the seed. ``redlock-master-amnesia``:
        the holder is paused for ``amount`` TTLs and one master that granted its lock restarts
        empty: with the holder's lock on a bare quorum, the rest become a quorum for a contender.
        """
        masters = self.server
        if not isinstance(masters, MasterFaults):
            raise FaultUnsupported(f"{step.fault}: the server has no independent Redlock masters")
        if step.fault == "redlock-minority-kill":
            names = sorted(self.rng.sample(masters.masters(), (len(masters.masters()) - 1) // 2))
            detail: dict[str, Any] = {"members": names}
        else:
            holders = [w for w in self._pick("holder") if w.believed is not None]
            for w in holders:  # the worker records the pause when it really stalls
                w.pause_for_s = step.amount * self.ttl_s
            granting = masters.granting_masters()
            names = [self.rng.choice(granting)] if granting else []
            detail = {"members": names, "holder": ",".join(w.name for w in holders), "granting": granting}
        target = "masters:" + ",".join(names)
        self._edge(step, "start", target, **detail)
        try:
            for name in names:
                masters.kill_member(name)
            self.rt.sleep(duration)
        finally:
            for name in names:
                masters.restart_member(name)
        self._edge(step, "end", target, **detail)
