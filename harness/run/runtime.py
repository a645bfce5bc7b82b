"""Where workers and the nemesis run: real threads on real time, or a deterministic simulation.

Both runtimes are also the run's ``Clock``, and ``sleep`` is the only place a task may wait. On the
virtual runtime exactly one task runs at a time and ``sleep`` hands control to the task with the
earliest wake-up (ties by order of sleeping), so a run is a pure function of its seed and an hour
of lock traffic takes seconds. When a run ends, ``sleep`` raises ``RunStopped`` in every task so
that each unwinds through its own ``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable
from typing import Protocol

import greenlet

from lockchaos.backends.base import LockChaosError
from lockchaos.harness.run import interrupts

NS = 1_000_000_000

_Poll = tuple[Callable[[], bool], int, float]
"""What a polling task waits for: (ready, deadline_ns, every_s); see ``VirtualRuntime.poll_until``."""


class RunStopped(BaseException):
    """The run is over: raised from ``sleep`` so tasks stop wherever they are waiting.

    A BaseException so that a worker's ``except Exception`` around a backend call cannot eat it.
    """


class Runtime(Protocol):
    stop_requested_ns: int | None
    """When the last run told its tasks to stop (its deadline, or an interrupt); they may take longer."""

    def now_ns(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...

    def spawn(self, name: str, fn: Callable[[], None]) -> None: ...

    def run(self, duration_s: float) -> list[BaseException]: ...


class RealRuntime:
    """Threads on the monotonic clock; a run ends by waking every sleeper with ``RunStopped``."""

    def __init__(self, join_timeout_s: float = 30.0, *, stuck_is_error: bool = True) -> None:
        self._stop = threading.Event()
        self._pending: list[tuple[str, Callable[[], None]]] = []
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.join_timeout_s = join_timeout_s
        self.stuck_is_error = stuck_is_error
        """False in a worker process: a task still in a backend call after the run is a blocked call,
        which its driver records (outcome unknown) before killing the process, not a harness failure."""
        self.stuck: list[str] = []
        """The tasks still running ``join_timeout_s`` after the last run ended."""
        self.stop_requested_ns: int | None = None

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def sleep(self, seconds: float) -> None:
        if self._stop.is_set():
            raise RunStopped
        if seconds > 0 and self._stop.wait(seconds):
            raise RunStopped

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self._pending.append((name, fn))

    def stop(self) -> None:
        """End the run now (a worker process told to stop by its driver), as the deadline would."""
        self._stop.set()

    def _wrap(self, fn: Callable[[], None]) -> Callable[[], None]:
        def task() -> None:
            try:
                fn()
            except RunStopped:
                pass
            except BaseException as exc:
                with self._lock:
                    self._errors.append(exc)

        return task

    def run(self, duration_s: float) -> list[BaseException]:
        threads = [threading.Thread(target=self._wrap(fn), name=name, daemon=True)
                   for name, fn in self._pending]
        self._pending.clear()
        for t in threads:
            t.start()
        deadline = time.monotonic() + duration_s
        while not interrupts.STOP.is_set():  # wake up now and then to notice an interrupt
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.wait(min(0.2, remaining)):
                break
            if not any(t.is_alive() for t in threads):  # every task ended early (a full disk): so does the run
                break
        self.stop_requested_ns = self.now_ns()
        self._stop.set()
        deadline = time.monotonic() + self.join_timeout_s
        stuck = []
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                stuck.append(t.name)
        self._stop.clear()  # the main thread may sleep again (quiesce) once the tasks are gone
        self.stuck = stuck
        if stuck and self.stuck_is_error:
            self._errors.append(LockChaosError(f"tasks still running after the run: {stuck}"))
        return list(self._errors)


class VirtualRuntime:
    """Discrete-event simulation: tasks are greenlets, one runs at a time, time jumps to the next wake-up.

    Greenlets rather than threads because a switch costs about a microsecond instead of tens: that
    is the difference between an hour of sixteen-worker soak in seconds and in minutes.
    """

    def __init__(self, start_ns: int = 0, *, max_steps: int = 500_000_000) -> None:
        self._now = start_ns
        self._heap: list[tuple[int, int, greenlet.greenlet, _Poll | None]] = []
        self._seq = 0
        self._tasks: dict[greenlet.greenlet, str] = {}
        self._stopping = False
        self._errors: list[BaseException] = []
        self._hub: greenlet.greenlet | None = None
        self.max_steps = max_steps
        self.steps = 0
        self.stop_requested_ns: int | None = None

    def now_ns(self) -> int:
        return self._now

    def _push(self, wake_ns: int, task: greenlet.greenlet, poll: _Poll | None = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (wake_ns, self._seq, task, poll))

    def sleep(self, seconds: float) -> None:
        if seconds <= 0 and not self._stopping:  # a zero delay (a fault-free link): nothing to do
            return
        current = greenlet.getcurrent()
        if current not in self._tasks or self._hub is None:
            if seconds > 0:  # the driver itself, with no task running: just move time
                self._now += round(seconds * NS)
            return
        if self._stopping:
            raise RunStopped
        if seconds <= 0:
            return
        self._push(self._now + max(1, round(seconds * NS)), current)
        self._hub.switch()
        if self._stopping:
            raise RunStopped

    def poll_until(self, ready: Callable[[], bool], deadline_ns: int, every_s: float) -> None:
        """``while not ready() and now < deadline: sleep(min(every_s, time left))``, in fewer switches.

        A paused fake server's clients poll it every 5 ms: half of a soak's wake-ups. Here the hub
        itself checks ``ready`` at each of those wake-ups and only switches to the task when it is
        true or the time is up. Each wake-up is still pushed on the heap, at the same time and in the
        same order as the sleeps it replaces, so the run stays the same function of its seed.
        """
        now = self._now
        remaining_s = (deadline_ns - now) / 1e9
        if remaining_s <= 0:
            return
        current = greenlet.getcurrent()
        if current not in self._tasks or self._hub is None:  # the driver itself: plain sleeps
            while not ready() and (remaining_s := (deadline_ns - self._now) / 1e9) > 0:
                self.sleep(min(every_s, remaining_s))
            return
        if self._stopping:
            raise RunStopped
        self._push(now + max(1, round(min(every_s, remaining_s) * NS)), current, (ready, deadline_ns, every_s))
        self._hub.switch()
        if self._stopping:
            raise RunStopped

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        def body() -> None:
            with contextlib.suppress(RunStopped):
                fn()

        task = greenlet.greenlet(body)
        self._tasks[task] = name
        self._push(self._now, task)

    def _step(self, task: greenlet.greenlet, stop: bool = False) -> None:
        try:
            if stop and task:  # started and suspended in sleep: unwind it there
                task.throw(RunStopped)
            elif not stop:
                task.switch()
        except RunStopped:
            pass
        except Exception as exc:
            exc.add_note(f"in task {self._tasks.get(task, '?')}")
            self._errors.append(exc)

    def run(self, duration_s: float) -> list[BaseException]:
        self._hub = greenlet.getcurrent()
        for task in self._tasks:
            task.parent = self._hub
        end = self._now + round(duration_s * NS)
        try:
            while self._heap and self._heap[0][0] <= end:
                wake, _, task, poll = heapq.heappop(self._heap)
                self._now = wake
                self.steps += 1
                if self.steps % 4096 == 0 and interrupts.STOP.is_set():
                    break
                if self.steps > self.max_steps:
                    self._errors.append(LockChaosError(f"simulation exceeded {self.max_steps} steps"))
                    break
                if poll is not None:  # a task polling: wake it only when it would stop polling
                    ready, deadline_ns, every_s = poll
                    remaining_s = (deadline_ns - wake) / 1e9
                    if remaining_s > 0 and not ready():
                        self._push(wake + max(1, round(min(every_s, remaining_s) * NS)), task, poll)
                        continue
                self._step(task)
            self._now = max(self._now, end)
        finally:
            self.stop_requested_ns = self._now
            self._stopping = True
            while self._heap:  # every sleeper unwinds through its finally blocks
                _, _, task, _ = heapq.heappop(self._heap)
                self._step(task, stop=True)
            self._tasks.clear()
            self._stopping = False
            self._hub = None
        return list(self._errors)
