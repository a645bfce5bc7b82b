"""Random operations and clock moves against FakeKVLock: the safety invariants must always hold."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lockchaos.backends.base import Lease
from lockchaos.backends.clock import ManualClock
from lockchaos.backends.fake import PROFILES, FakeKVLock

KEYS = st.sampled_from(["a", "b"])
OWNERS = st.sampled_from(["o1", "o2", "o3"])
TTLS = st.integers(min_value=1, max_value=3000)


class FakeLockMachine(RuleBasedStateMachine):
    """Keeps its own account of what each owner was granted and until when (by the applied TTL)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.lock = FakeKVLock(self.clock, PROFILES["etcd"], expiry_lag_ms=0)
        # key -> (lease, exclusive-until ns) as granted to a believed holder
        self.granted: dict[str, tuple[Lease, int]] = {}
        self.last_token: dict[str, int] = {}

    def _now(self) -> int:
        return self.clock.now_ns()

    @rule(key=KEYS, owner=OWNERS, ttl=TTLS)
    def acquire(self, key: str, owner: str, ttl: int) -> None:
        lease = self.lock.acquire(key, owner, ttl)
        current = self.granted.get(key)
        if lease is None:
            assert current is not None and self._now() < current[1], "refused a free key"
            return
        # One holder at most: the previous grant must be over.
        assert current is None or self._now() >= current[1], f"{key} granted twice at once"
        assert lease.token > self.last_token.get(key, 0), "token did not increase"
        assert lease.ttl_ms >= ttl and lease.ttl_ms % 1000 == 0
        self.last_token[key] = lease.token
        self.granted[key] = (lease, self._now() + lease.ttl_ms * 1_000_000)

    @rule(key=KEYS, owner=OWNERS, ttl=TTLS)
    def renew(self, key: str, owner: str, ttl: int) -> None:
        before = self.granted.get(key)
        lease = self.lock.renew(key, owner, ttl)
        live = before is not None and self._now() < before[1] and before[0].owner == owner
        assert (lease is not None) == live
        if lease is not None and before is not None:
            assert (lease.owner, lease.token) == (before[0].owner, before[0].token)
            self.granted[key] = (lease, self._now() + lease.ttl_ms * 1_000_000)

    @rule(key=KEYS, owner=OWNERS)
    def release(self, key: str, owner: str) -> None:
        before = self.granted.get(key)
        released = self.lock.release(key, owner)
        live = before is not None and self._now() < before[1] and before[0].owner == owner
        assert released == live
        if released:
            del self.granted[key]

    @rule(ms=st.integers(min_value=0, max_value=2500))
    def advance(self, ms: int) -> None:
        self.clock.advance_ns(ms * 1_000_000)

    @rule()
    def crash_and_restart(self) -> None:
        self.lock.crash()  # etcd profile: durable, so nothing may change

    @invariant()
    def holder_matches_the_grants(self) -> None:
        for key in ("a", "b"):
            current = self.granted.get(key)
            expected = current[0] if current is not None and self._now() < current[1] else None
            seen = self.lock.holder(key)
            if expected is None:
                assert seen is None
            else:
                assert seen is not None and (seen.owner, seen.token) == (expected.owner, expected.token)


FakeLockMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestFakeLock = FakeLockMachine.TestCase
