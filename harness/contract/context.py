"""What a contract rule needs: fresh clients, fresh keys, TTLs sized to the backend, and timing probes.

Timing rules never trust a sleep chosen by feel. A probe is *conclusive* only when its whole
[invoke, complete] window lies where the answer is forced: "surely still held" must complete
before the earliest possible expiry, "surely gone" must start after the latest. A probe that a
loaded machine delays past its window is *inconclusive*, and the rule is retried on a fresh key.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lockchaos.backends.base import Capabilities, Lease, LockBackend
from lockchaos.backends.clock import NS_PER_MS, REAL_CLOCK, Clock


class ContractFailure(AssertionError):
    """A rule of the reference semantics or a declared capability does not hold."""


class Inconclusive(Exception):
    """A timing probe landed outside its window (machine too slow); retry on a fresh key."""


class RuleSkipped(Exception):
    """The rule does not apply (with the reason); reported as skipped, never as passed."""


class ServerControl(Protocol):
    """Lets durability rules restart the server the contract runs against.

    Not a server: the contract's *target* (``run.targets.Provisioned``, or a user's own object), whose
    ``restart_server`` is kill + restart on its ``ServerHandle`` (``harness/servers/handle.py``). It
    stays this one-method protocol because users pass their own to ``run_contract(server=...)``.
    """

    def restart_server(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Timed:
    """One call's result and its [invoke, complete] window on the contract's clock."""

    invoke_ns: int
    complete_ns: int
    value: object


class ContractContext:
    """One rule's world: every client it opens is closed at the end; keys never collide."""

    def __init__(
        self,
        factory: Callable[[], LockBackend],
        *,
        clock: Clock = REAL_CLOCK,
        server: ServerControl | None = None,
        base_ttl_ms: int = 200,
        slack_ms: int = 50,
    ) -> None:
        self._factory = factory
        self.clock = clock
        self.server = server
        self.slack_ms = slack_ms
        self._clients: list[LockBackend] = []
        self._keys = itertools.count()
        self._run = uuid.uuid4().hex[:8]
        self.caps: Capabilities = self.client().capabilities
        self.ttl_ms = self.caps.applied_ttl(self._on_grid(max(base_ttl_ms, self.caps.min_ttl_ms)))

    def client(self) -> LockBackend:
        backend = self._factory()
        self._clients.append(backend)
        return backend

    def key(self, tag: str) -> str:
        return f"lockchaos-contract/{self._run}/{tag}/{next(self._keys)}"

    def owner(self, tag: str) -> str:
        return f"{tag}-{self._run}"

    def _on_grid(self, ttl_ms: int) -> int:
        """``ttl_ms`` rounded up to the declared granularity, so that a backend rounding down
        (truncating) applies no less than asked: rules size their TTLs by the room they need."""
        gran = self.caps.ttl_granularity_ms
        return -(-ttl_ms // gran) * gran

    def ttl_with_room(self, room_ms: int) -> int:
        """An applied TTL of at least ``room_ms``: rules that act mid-lease need that much time."""
        return self.caps.applied_ttl(self._on_grid(max(self.ttl_ms, room_ms)))

    def close(self) -> None:
        for backend in self._clients:
            with contextlib.suppress(Exception):
                backend.close()
        self._clients.clear()

    # --- timing ---------------------------------------------------------------------------------

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def timed(self, call: Callable[[], object]) -> Timed:
        start = self.clock.now_ns()
        value = call()
        return Timed(start, self.clock.now_ns(), value)

    def sleep_until(self, t_ns: int) -> None:
        delta = t_ns - self.clock.now_ns()
        if delta > 0:
            self.clock.sleep(delta / 1e9)

    def latest_expiry_ns(self, granted: Timed, ttl_ms: int) -> int:
        """When a lease granted inside ``granted``'s window is surely gone, lag and slack included."""
        return granted.complete_ns + (ttl_ms + self.caps.expiry_lag_ms + self.slack_ms) * NS_PER_MS

    @staticmethod
    def earliest_expiry_ns(granted: Timed, ttl_ms: int) -> int:
        return granted.invoke_ns + ttl_ms * NS_PER_MS

    def look(self, backend: LockBackend, key: str) -> Lease | None:
        """Who holds ``key``, asked only as the backend declares it can tell.

        ``holder()`` where it tells anything; for ``holder_info="none"`` a probe owner tries to
        acquire the key (and releases at once what it got): refused means held (a presence-only
        lease is returned), granted means free. A process-wide registry of leases is never used.
        """
        if self.caps.holder_info != "none":
            return backend.holder(key)
        probe_owner = f"probe-{self._run}-{next(self._keys)}"
        got = backend.acquire(key, probe_owner, self.ttl_ms)
        if got is None:
            return Lease(key, "", None, 0)
        backend.release(key, probe_owner)
        return None

    def require_expiry(self) -> None:
        """Every rule that expects a lease to be gone by its TTL asks this first: a client renewing its
        leases in the background keeps them until released, so such rules do not apply to it."""
        if self.caps.renews_in_background:
            raise RuleSkipped("the backend declares renews_in_background: its held leases stay in force until "
                              "released or their holder's process dies or freezes (judged by soaks: "
                              "holder-crash, holder-pause)")

    def probe_gone(self, backend: LockBackend, key: str, granted: Timed, ttl_ms: int) -> Lease | None:
        """``holder`` called once the lease granted in ``granted`` must have expired."""
        self.require_expiry()
        self.sleep_until(self.latest_expiry_ns(granted, ttl_ms) + 1)
        return self.look(backend, key)

    def probe_held(self, backend: LockBackend, key: str, until_ns: int) -> Lease | None:
        """``holder`` that must complete before ``until_ns``, else the probe proves nothing."""
        probe = self.timed(lambda: self.look(backend, key))
        if probe.complete_ns >= until_ns:
            raise Inconclusive("holder() completed after the lease could have expired")
        value = probe.value
        assert value is None or isinstance(value, Lease)
        return value


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractFailure(message)
