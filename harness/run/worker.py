"""A worker: one lock client running the acquire -> work -> renew -> release loop of a real lock user.

Every call is recorded in the history with its [invoke, complete] window and outcome. Faults that
must strike at a particular point of the loop (a GC pause between the validity check and the write,
a renewer that dies, a release whose reply is lost) are armed by the nemesis and applied here, at
that point, and recorded when they really happen.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lockchaos.backends.base import BackendUnavailable, Lease, LockBackend
from lockchaos.backends.clock import NS_PER_MS
from lockchaos.backends.redaction import redact_text
from lockchaos.harness.faults.holder import HOLDER_PAUSE
from lockchaos.harness.faults.link import (
    LATE_RELEASE,
    LOSE_ACQUIRE_REPLY,
    LOSE_RELEASE_REPLY,
    LOSE_RELEASE_REQUEST,
    LOSE_RENEW_REQUEST,
)
from lockchaos.harness.run.armedfaults import ArmedFaults
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpName, OpRecord, Outcome, Record, lease_dict
from lockchaos.harness.run.register import FencedRegister
from lockchaos.harness.run.runtime import RealRuntime, RunStopped, Runtime
from lockchaos.harness.scenarios import WorkerPlan

UNHEARD_FOR_TTLS = 3
"""The longest a call's link drops every byte (lose-*-request), for a client that never gives up."""
LATE_RELEASE_LEAD = 1.5
"""A late release is sent this many one-way delays before the lease ends: its first request lands
half a delay before the expiry, a second round trip one and a half delays after it."""


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


class LinkFaults(Protocol):
    """The network between one client and its server, as the nemesis can fault it."""

    def partition(self) -> None: ...

    def heal(self) -> None: ...

    def set_latency(self, one_way_ms: int) -> None: ...

    def delay_replies(self, ms: int) -> None: ...

    def reset(self) -> None: ...

    def drop_replies(self, on: bool) -> None: ...

    def lose_next_reply(self) -> None:
        """The next request takes effect but its reply is lost to a connection reset."""


@dataclass(frozen=True, slots=True)
class Timing:
    """A ``WorkerPlan`` turned into seconds for one TTL."""

    ttl_ms: int
    hold_s: float
    renew_every_s: float
    retry_every_s: float
    work_every_s: float

    @classmethod
    def of(cls, plan: WorkerPlan, ttl_ms: int) -> Timing:
        ttl_s = ttl_ms / 1000
        return cls(ttl_ms, plan.hold * ttl_s, plan.renew_every * ttl_s, plan.retry_every * ttl_s,
                   plan.work_every * ttl_s)


class _Crashed(Exception):
    """The worker's process died: stop at once, release nothing."""


class Worker(ArmedFaults):
    def __init__(
        self,
        wid: str,
        open_client: Callable[[], LockBackend],
        key: str,
        plan: WorkerPlan,
        timing: Timing,
        runtime: Runtime,
        record: Callable[[Record], None],
        register: FencedRegister,
        rng: random.Random,
        link_of: Callable[[], LinkFaults | None] = lambda: None,
        owner_id: str | None = None,
        keys: tuple[str, ...] = (),
    ) -> None:
        self.wid = wid
        self._open_client = open_client
        self.key = key
        self.keys = keys
        """Several keys (a stress run): each acquire picks one of them at random; else ``key`` only."""
        self.plan = plan
        self.t = timing
        self.rt = runtime
        self._record = record
        self.register = register
        self.rng = rng
        self._link_of = link_of
        self._owner_id = owner_id
        self.link: LinkFaults | None = None  # the network of the client currently open
        self._unheard_until = 0  # lose-renew-request: renews invoked before this instant are lost
        self._in_flight: tuple[OpName, dict[str, Any], int] | None = None
        """The call this worker's thread is inside (op, args, invoke), for ``abandon_call``."""
        self._in_flight_lock = threading.Lock()
        self.incarnation = 1
        self.client: LockBackend | None = None
        self.believed: Lease | None = None  # the lease this worker thinks it holds
        self.crashed = False  # by the nemesis, as the flags of ArmedFaults

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @incarnation.setter
    def incarnation(self, n: int) -> None:
        self._incarnation = n
        self._name = f"{self.wid}#{n}"  # read on every call and record: built once per incarnation

    @property
    def name(self) -> str:
        """This worker process: who calls, who writes, whom faults hit."""
        return self._name

    @property
    def owner(self) -> str:
        """The owner id it gives the lock: its own name, unless misconfigured to share one."""
        return self._owner_id or self.name

    # --- nemesis hooks --------------------------------------------------------------------------

    def crash(self) -> None:
        self.crashed = True

    def revive(self) -> None:
        """A supervisor restarts the crashed process: same worker slot, new owner identity, and none
        of the dead process's armed faults (as a ``ProcessWorker``'s new child), nor its open window
        of lost renews."""
        self.disarm()
        self._unheard_until = 0
        self.crashed = False
        self.incarnation += 1

    # --- recording ------------------------------------------------------------------------------

    def _call(self, op: OpName, args: dict[str, Any], call: Callable[[], object]) -> tuple[Outcome, object]:
        invoke = self.rt.now_ns()
        error: str | None = None
        value: object = None
        error_type: str | None = None
        with self._in_flight_lock:
            self._in_flight = (op, args, invoke)
        try:
            try:
                value = call()
            finally:
                with self._in_flight_lock:
                    abandoned, self._in_flight = self._in_flight is None, None
                if abandoned:  # the driver recorded this call when the run ended without it: not twice
                    raise RunStopped  # (over whatever the call raised: recorded already)
            if op == "holder":
                outcome: Outcome = "ok"
            else:
                outcome = "ok" if value not in (None, False) else "fail"
        except BackendUnavailable as exc:
            # an adapter's message may quote its URL: redacted
            outcome, error, error_type = ("indeterminate", f"{type(exc).__name__}: {redact_text(str(exc))}",
                                          _qualname(exc))
        except Exception as exc:
            # Not mapped to BackendUnavailable (a raw ConnectionError, a gRPC error, a ValueError for
            # valid input: the worker only ever passes valid input). Its outcome is unknown all the
            # same, so the safety checks treat it as indeterminate; the error-handling checker reports it.
            outcome, error, error_type = ("indeterminate",
                                          f"unexpected {type(exc).__name__}: {redact_text(str(exc))}", _qualname(exc))
        except RunStopped:
            # The run ended while the call was in flight: it may have taken effect (a release whose reply
            # was late), so it is recorded as indeterminate, never dropped from the history.
            if abandoned:
                raise
            self._record(OpRecord(client=self.name, op=op, key=self.key, args=args, invoke_ns=invoke,
                                  complete_ns=self.rt.now_ns(), outcome="indeterminate",
                                  error="RunStopped: the run ended during the call", error_type=None))
            raise
        lease = value if isinstance(value, Lease) else None
        self._record(OpRecord(client=self.name, op=op, key=self.key, args=args, invoke_ns=invoke,
                              complete_ns=self.rt.now_ns(), outcome=outcome, lease=lease_dict(lease),
                              error=error, error_type=error_type))
        return outcome, value

    def abandon_call(self, error: str) -> bool:
        """Record the call this worker's thread is still blocked in as indeterminate (a thread cannot be
        stopped): what a process worker's driver does before it kills the process. False if none."""
        with self._in_flight_lock:
            in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return False
        op, args, invoke = in_flight
        self._record(OpRecord(client=self.name, op=op, key=self.key, args=args, invoke_ns=invoke,
                              complete_ns=self.rt.now_ns(), outcome="indeterminate", error=error, error_type=None))
        return True

    def _fault(self, fault: str, phase: str, **detail: Any) -> None:
        self._record(FaultRecord(fault=fault, phase=phase, target=self.name,  # type: ignore[arg-type]
                                 time_ns=self.rt.now_ns(), detail=detail))

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                if self.crashed:
                    self._die()
                    while self.crashed:
                        self.rt.sleep(self.t.retry_every_s)
                self._cycle()
        finally:
            self._close()

    def _die(self) -> None:
        self.believed = None
        self._close()

    def _close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # closing a broken client must not hide results
                self.client.close()
            self.client = None

    def connect(self) -> LockBackend:
        if self.client is None:
            self.client = self._open_client()
            self.link = self._link_of()  # a new client may come with a new link to fault
            # The client's own call timeout, when it tells it: the slow-call checker judges against it.
            timeout = getattr(self.client, "timeout_ms", None)
            self._record(NoteRecord("client", self.rt.now_ns(), {
                "client": self.name, "timeout_ms": timeout if isinstance(timeout, int) else None}))
        return self.client

    def _cycle(self) -> None:
        try:
            client = self.connect()
        except BackendUnavailable:
            self.rt.sleep(self.t.retry_every_s)
            return
        except Exception as exc:  # the factory let an unmapped error through: reported, then retried
            self._record(NoteRecord("open-error", self.rt.now_ns(), {
                "client": self.name, "error": f"unexpected {type(exc).__name__}: {redact_text(str(exc))}",
                "error_type": _qualname(exc)}))
            self.rt.sleep(self.t.retry_every_s)
            return
        if self.keys:
            self.key = self.rng.choice(self.keys)
        if self.plan.observe:  # whatever it answers (or raises), the worker tries next as it would anyway
            self._call("holder", {}, lambda: client.holder(self.key))
        ttl = self.t.ttl_ms
        lose = self.lose_acquire_reply and self.link is not None
        if lose:
            assert self.link is not None
            self.lose_acquire_reply = False
            self._fault(LOSE_ACQUIRE_REPLY.name, "start")
            self.link.lose_next_reply()
        invoke = self.rt.now_ns()
        outcome, value = self._call("acquire", {"owner": self.owner, "ttl_ms": ttl},
                                    lambda: client.acquire(self.key, self.owner, ttl))
        if lose:
            self._fault(LOSE_ACQUIRE_REPLY.name, "end")
        if outcome == "ok" and isinstance(value, Lease):
            start = invoke if self.plan.trust_from == "invoke" else self.rt.now_ns()
            try:
                self._hold(client, value, start + value.ttl_ms * NS_PER_MS)
            except _Crashed:
                return
        self.rt.sleep(self.t.retry_every_s * (1 + self.rng.random()))

    def _hold(self, client: LockBackend, lease: Lease, valid_until: int) -> None:
        self.believed = lease
        held_since = self.rt.now_ns()
        next_renew = held_since + round(self.t.renew_every_s * 1e9)
        while self.late_release_ms > 0 or self.rt.now_ns() < held_since + round(self.t.hold_s * 1e9):
            if self.crashed:
                raise _Crashed
            now = self.rt.now_ns()
            release_at = valid_until - round(LATE_RELEASE_LEAD * self.late_release_ms * NS_PER_MS)
            if self.late_release_ms > 0 and now >= release_at:
                self._late_release(client)
                return
            if now >= next_renew and not self.renewer_dead and not self.late_release_ms:
                invoke = now
                outcome, value = self._renew(client)
                if outcome == "fail":
                    self.believed = None
                    return  # the lock is gone: nothing to release
                if outcome == "ok" and isinstance(value, Lease):
                    valid_until = invoke + value.ttl_ms * NS_PER_MS
                    next_renew = invoke + round(self.t.renew_every_s * 1e9)
                else:
                    next_renew = self.rt.now_ns() + round(self.t.retry_every_s * 1e9)
            # A careful client stops at its validity deadline (after one last renew, as clients do to
            # ask "am I still the holder?"); one that trusts a (dead) renewer does not. That renew is
            # the holder's like any other: a lose-renew-request window loses it too.
            if not self.renewer_dead and self.rt.now_ns() >= valid_until:
                invoke = self.rt.now_ns()
                outcome, value = self._renew(client)
                if outcome != "ok" or not isinstance(value, Lease):
                    self.believed = None
                    return
                valid_until = invoke + value.ttl_ms * NS_PER_MS
                next_renew = invoke + round(self.t.renew_every_s * 1e9)
            self._pause_point()
            if self.crashed:
                raise _Crashed
            self.register.write(self.name, lease.token, self.key)
            nap = self.t.work_every_s
            if self.late_release_ms > 0:  # wake right at the release time, not up to a nap later
                nap = min(nap, max(0.0, (release_at - self.rt.now_ns()) / 1e9))
            self.rt.sleep(nap)
        self._release(client)

    def _renew(self, client: LockBackend) -> tuple[Outcome, object]:
        """Every renew the holder sends (scheduled, or its last one at the validity deadline); inside a
        lose-renew-request window its request is lost: a client that reports the extensions it never
        got keeps its holder working past the lease's end."""
        def renew() -> tuple[Outcome, object]:
            return self._call("renew", {"owner": self.owner, "ttl_ms": self.t.ttl_ms},
                              lambda: client.renew(self.key, self.owner, self.t.ttl_ms))

        now = self.rt.now_ns()
        if self.lose_renew_requests_s > 0:  # the window opens at the first renew after arming
            self._unheard_until = now + round(self.lose_renew_requests_s * 1e9)
            self.lose_renew_requests_s = 0.0
        if now < self._unheard_until and self.link is not None:
            return self._unheard(LOSE_RENEW_REQUEST.name, self.link, renew)
        return renew()

    def _pause_point(self) -> None:
        """Where a GC pause hurts most: after the validity check, before the write."""
        if self.pause_for_s > 0:
            pause = self.take_pause()
            self._fault(HOLDER_PAUSE.name, "start", seconds=pause)
            self.rt.sleep(pause)
            self._fault(HOLDER_PAUSE.name, "end")

    def _unheard(self, fault: str, link: LinkFaults,
                 call: Callable[[], tuple[Outcome, object]]) -> tuple[Outcome, object]:
        """One call over a link that drops every byte until the call gives up: the server never hears
        it. An honest client can only say it does not know."""
        self._fault(fault, "start")
        healed = threading.Event()

        def heal() -> None:
            # No reset on top: on the fake's link a reset loses the *next* call's reply (a contender's
            # grant nobody hears of), and a client whose call timed out has dropped that connection.
            if not healed.is_set():
                healed.set()
                link.heal()

        # A client that never gives up must not hold the link down for the rest of the run: after the
        # slow-call bound (3 TTLs) the link heals anyway. Virtual time needs none: the fake gives up in it.
        timer = None
        if isinstance(self.rt, RealRuntime):
            timer = threading.Timer(UNHEARD_FOR_TTLS * self.t.ttl_ms / 1000, heal)
            timer.daemon = True
        link.partition()
        if timer is not None:
            timer.start()
        try:
            return call()
        finally:
            if timer is not None:
                timer.cancel()
            heal()
            self._fault(fault, "end")

    def _release_unheard(self, client: LockBackend, link: LinkFaults) -> None:
        """The release is lost: the lease stays until its TTL, and a client that says "released" sends
        its contenders to a key that is still held."""
        self.lose_release_request = False
        self._unheard(LOSE_RELEASE_REQUEST.name, link, lambda: self._call(
            "release", {"owner": self.owner}, lambda: client.release(self.key, self.owner)))
        self.believed = None

    def _late_release(self, client: LockBackend) -> None:
        """Release just before the lease ends, over a link slowed for this one call: a single atomic
        request still lands in time, the second round trip of a check-then-delete lands after the
        expiry, when a contender may already hold the key."""
        delay_ms, self.late_release_ms = self.late_release_ms, 0
        link = self.link
        self._fault(LATE_RELEASE.name, "start", one_way_ms=delay_ms)
        if link is not None:
            link.set_latency(delay_ms)
        try:
            self._call("release", {"owner": self.owner}, lambda: client.release(self.key, self.owner))
        finally:
            if link is not None:
                link.set_latency(0)
            self._fault(LATE_RELEASE.name, "end")
        self.believed = None

    def _release(self, client: LockBackend) -> None:
        if self.lose_release_request and self.link is not None:
            self._release_unheard(client, self.link)
            return
        lose = self.lose_release_reply and self.link is not None
        if lose:
            assert self.link is not None
            self.lose_release_reply = False
            self._fault(LOSE_RELEASE_REPLY.name, "start")
            self.link.drop_replies(True)
        try:
            self._call("release", {"owner": self.owner}, lambda: client.release(self.key, self.owner))
        finally:
            if lose:
                assert self.link is not None
                self.link.reset()
                self.link.drop_replies(False)
                self._fault(LOSE_RELEASE_REPLY.name, "end")
        self.believed = None
