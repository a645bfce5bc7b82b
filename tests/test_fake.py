"""FakeKVLock is the reference: its semantics and its faults, pinned on a manual clock."""

from __future__ import annotations

import threading

import pytest

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendTimeout, BackendUnavailable, Capabilities, ConfigurationError, Lease
from lockchaos.backends.clock import ManualClock
from lockchaos.backends.fake import PROFILES, FakeClient, FakeKVLock, drop_fake_server, fake_server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def lock(clock: ManualClock) -> FakeKVLock:
    return FakeKVLock(clock)


def test_acquire_free_key_grants_token_one(lock: FakeKVLock) -> None:
    assert lock.acquire("k", "a", 1000) == Lease("k", "a", 1, 1000)


def test_acquire_sets_owner_and_expiry_atomically(lock: FakeKVLock, clock: ManualClock) -> None:
    lease = lock.acquire("k", "a", 1000)
    assert lease is not None and lock.holder("k") == lease
    clock.advance(0.999)
    assert lock.holder("k") == lease
    clock.advance(0.001)
    assert lock.holder("k") is None


def test_acquire_is_not_reentrant(lock: FakeKVLock) -> None:
    lock.acquire("k", "a", 1000)
    assert lock.acquire("k", "a", 1000) is None
    assert lock.acquire("k", "b", 1000) is None


def test_multiple_renewals_extend_expiry(lock: FakeKVLock, clock: ManualClock) -> None:
    lock.acquire("k", "a", 1000)
    for _ in range(10):
        clock.advance(0.9)
        assert lock.renew("k", "a", 1000) is not None
    clock.advance(0.9)
    assert lock.holder("k") is not None  # 9.9 s after a 1 s lease was granted


def test_renew_does_not_change_owner_or_token(lock: FakeKVLock) -> None:
    lease = lock.acquire("k", "a", 1000)
    renewed = lock.renew("k", "a", 5000)
    assert renewed is not None and lease is not None
    assert (renewed.owner, renewed.token, renewed.ttl_ms) == ("a", lease.token, 5000)


def test_renew_by_other_owner_fails(lock: FakeKVLock) -> None:
    lock.acquire("k", "a", 1000)
    assert lock.renew("k", "b", 1000) is None
    assert lock.holder("k") is not None and lock.holder("k").owner == "a"  # type: ignore[union-attr]


def test_renew_after_expiry_fails(lock: FakeKVLock, clock: ManualClock) -> None:
    lock.acquire("k", "a", 1000)
    clock.advance(1.0)
    assert lock.renew("k", "a", 1000) is None


def test_release_only_by_owner(lock: FakeKVLock) -> None:
    lock.acquire("k", "a", 1000)
    assert lock.release("k", "b") is False
    assert lock.release("k", "a") is True
    assert lock.release("k", "a") is False


def test_tokens_increase_across_release_and_expiry(lock: FakeKVLock, clock: ManualClock) -> None:
    tokens = []
    for i in range(3):
        tokens.append(lock.acquire("k", f"o{i}", 1000).token)  # type: ignore[union-attr]
        lock.release("k", f"o{i}")
    tokens.append(lock.acquire("k", "x", 1000).token)  # type: ignore[union-attr]
    clock.advance(2)
    tokens.append(lock.acquire("k", "y", 1000).token)  # type: ignore[union-attr]
    assert tokens == [1, 2, 3, 4, 5]


def test_tokens_are_per_key(lock: FakeKVLock) -> None:
    assert lock.acquire("a", "o", 1000).token == 1  # type: ignore[union-attr]
    assert lock.acquire("b", "o", 1000).token == 1  # type: ignore[union-attr]


def test_expiry_calculation_with_large_timestamps() -> None:
    clock = ManualClock(start_ns=2**62)
    lock = FakeKVLock(clock)
    lease = lock.acquire("k", "a", 2**31)
    assert lease is not None
    clock.advance_ns(2**31 * 1_000_000 - 1)
    assert lock.holder("k") == lease
    clock.advance_ns(1)
    assert lock.holder("k") is None


@pytest.mark.parametrize("ttl", [0, -5, 1.5, "10", None, True])
def test_bad_ttl_raises_value_error(lock: FakeKVLock, ttl: object) -> None:
    with pytest.raises(ValueError):
        lock.acquire("k", "a", ttl)  # type: ignore[arg-type]


def test_bad_input_is_rejected_before_any_io(clock: ManualClock) -> None:
    server = FakeKVLock(clock)
    server.kill()  # any I/O would now raise BackendUnavailable instead
    with pytest.raises(ValueError):
        server.acquire("", "a", 10)


def test_mimicked_etcd_rounds_ttl_to_seconds_with_minimum(clock: ManualClock) -> None:
    lock = FakeKVLock(clock, PROFILES["etcd"], expiry_lag_ms=0)
    assert lock.acquire("k", "a", 1).ttl_ms == 1000  # type: ignore[union-attr]
    assert lock.renew("k", "a", 1001).ttl_ms == 2000  # type: ignore[union-attr]


def test_expiry_lag_keeps_lease_visible_within_declared_lag(clock: ManualClock) -> None:
    caps = Capabilities(expiry_lag_ms=300)
    lock = FakeKVLock(clock, caps, expiry_lag_ms=200)
    lock.acquire("k", "a", 1000)
    clock.advance(1.1)
    assert lock.holder("k") is not None
    clock.advance(0.1)
    assert lock.holder("k") is None


def test_fake_may_not_lag_more_than_declared(clock: ManualClock) -> None:
    with pytest.raises(ValueError):
        FakeKVLock(clock, Capabilities(expiry_lag_ms=10), expiry_lag_ms=11)


# --- server faults -------------------------------------------------------------------------------


def test_killed_server_is_unavailable_until_restart(lock: FakeKVLock) -> None:
    lock.acquire("k", "a", 10_000)
    lock.kill()
    with pytest.raises(BackendUnavailable):
        lock.holder("k")
    lock.restart()
    assert lock.holder("k") is not None  # ideal fake is durable


def test_restart_without_durable_state_forgets_holder_and_tokens(clock: ManualClock) -> None:
    lock = FakeKVLock(clock, PROFILES["redis"])
    lock.acquire("k", "a", 10_000)
    lock.crash()
    assert lock.holder("k") is None
    assert lock.acquire("k", "b", 10_000).token == 1  # type: ignore[union-attr]


def test_etcd_profile_rearms_live_leases_on_restart(clock: ManualClock) -> None:
    lock = FakeKVLock(clock, PROFILES["etcd"], expiry_lag_ms=0, rearm_on_restart=True)
    lock.acquire("k", "a", 2000)
    clock.advance(1.5)
    lock.kill()
    clock.advance(1.0)  # the original deadline passes while the server is down
    lock.restart()
    assert lock.holder("k") is not None  # re-armed: 2 s from the restart
    clock.advance(1.9)
    assert lock.holder("k") is not None
    clock.advance(0.1)
    assert lock.holder("k") is None


def test_crash_can_override_durability(lock: FakeKVLock) -> None:
    lock.acquire("k", "a", 10_000)
    lock.crash(keep_state=False)
    assert lock.holder("k") is None


def test_paused_server_times_out_calls_and_leases_keep_expiring(clock: ManualClock) -> None:
    lock = FakeKVLock(clock, timeout_ms=500)
    lock.acquire("k", "a", 1000)
    lock.pause()
    with pytest.raises(BackendTimeout):
        lock.renew("k", "a", 1000)  # waits 0.5 s of manual time
    clock.advance(0.5)
    lock.resume()
    assert lock.holder("k") is None


def test_clock_jump_forward_expires_leases_early(lock: FakeKVLock) -> None:
    lock.acquire("k", "a", 10_000)
    lock.jump_clock(10_000)
    assert lock.holder("k") is None


# --- clients and fault per client ----------------------------------------------------------------


def test_clients_of_one_fake_url_share_locks() -> None:
    a, b = open_backend("fake://share-test"), open_backend("fake://share-test")
    try:
        assert a.acquire("k", "a", 10_000) is not None
        assert b.acquire("k", "b", 10_000) is None
        assert b.holder("k") is not None
    finally:
        drop_fake_server("share-test")


def test_partition_hits_one_client_only(clock: ManualClock) -> None:
    server = fake_server("partition-test", clock=clock)
    try:
        a, b = FakeClient(server, timeout_ms=100), FakeClient(server, timeout_ms=100)
        a.partition()
        with pytest.raises(BackendTimeout):
            a.acquire("k", "a", 1000)
        assert b.acquire("k", "b", 1000) is not None  # the partitioned acquire never landed
        a.heal()
        assert a.holder("k") is not None
    finally:
        drop_fake_server("partition-test")


def test_lost_reply_means_the_call_took_effect(clock: ManualClock) -> None:
    server = FakeKVLock(clock)
    client = FakeClient(server)
    client.lose_replies()
    with pytest.raises(BackendUnavailable):
        client.acquire("k", "a", 1000)
    assert server.holder("k") is not None


def test_latency_past_timeout_is_indeterminate_but_applied(clock: ManualClock) -> None:
    server = FakeKVLock(clock)
    client = FakeClient(server, timeout_ms=100)
    client.set_latency(60)  # request lands at 60 ms, reply would arrive at 120 ms
    with pytest.raises(BackendTimeout):
        client.acquire("k", "a", 1000)
    assert server.holder("k") is not None
    assert clock.now_ns() == 100_000_000


def test_latency_below_timeout_delays_the_call(clock: ManualClock) -> None:
    client = FakeClient(FakeKVLock(clock), timeout_ms=1000)
    client.set_latency(20)
    client.acquire("k", "a", 1000)
    assert clock.now_ns() == 40_000_000


def test_concurrent_acquires_have_exactly_one_winner() -> None:
    lock = FakeKVLock()
    for round_no in range(50):
        wins: list[Lease] = []
        barrier = threading.Barrier(8)

        def go(i: int, key: str = f"k{round_no}", barrier: threading.Barrier = barrier,
               wins: list[Lease] = wins) -> None:
            barrier.wait()
            lease = lock.acquire(key, f"o{i}", 10_000)
            if lease is not None:
                wins.append(lease)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1


@pytest.mark.parametrize(
    "url, message",
    [
        ("fake://", "needs a server name"),
        ("fake://x?profile=nope", "unknown fake profile"),
        ("fake://x?timeout_ms=abc", "timeout_ms must be a whole number of ms"),
        ("fake://x?colour=red", "unknown fake URL option"),
        ("mongo://localhost", "unknown backend scheme"),
        ("localhost:6379", "not a backend URL"),
    ],
)
def test_bad_backend_url_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_backend(url)
