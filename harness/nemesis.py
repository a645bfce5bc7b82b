"""The nemesis: runs a scenario's fault schedule against the server, the links and the workers.

Each fault is recorded with a start and an end in the history. A fault the environment cannot take
(a clock jump on a real server process, a network fault on an in-process adapter) is discovered
before the run starts, so the scenario is skipped with the reason instead of passing untested.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from lockchaos.backends.base import FaultUnsupported, Lease

from .history import FaultRecord, Record
from .runtime import Runtime
from .scenarios import FaultStep
from .worker import LinkFaults

NS = 1_000_000_000


class ServerFaults(Protocol):
    def kill(self) -> None: ...

    def restart(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def jump_clock(self, delta_ms: int) -> None: ...


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

    def crash(self) -> None: ...

    def revive(self) -> None: ...


SERVER_FAULTS = {"server-kill", "server-pause", "clock-jump"}
LINK_FAULTS = {"partition", "latency", "reply-delay", "reset-storm", "lose-release-reply"}
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
