"""The Redis adapter against real ``redis-server`` processes (no mocks, no fakeredis).

Every server here is started by the test on a free loopback port and stopped after it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from lockchaos.backends import open_backend
from lockchaos.backends.base import (
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    InfrastructureError,
    Lease,
    LockBackend,
    LockChaosError,
)
from lockchaos.backends.redis import EXPIRY_LAG_MS, RedisLock, open_redis
from lockchaos.harness.cli import main
from lockchaos.harness.contract.rules import find_rule
from lockchaos.harness.contract.runner import run_contract
from lockchaos.harness.run.targets import Provisioned, backend_target, probe_client, provisioned
from lockchaos.harness.servers.process import RedisServer
from tests.broken_redis_adapters import BROKEN

pytestmark = [
    pytest.mark.redis,
]


@pytest.fixture(scope="module")
def shared() -> Iterator[RedisServer]:
    """One server for the tests that do not fault it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def private() -> Iterator[RedisServer]:
    """A server of the test's own, for tests that pause, kill or inspect it."""
    with RedisServer() as server:
        yield server


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, decode_responses=True, socket_timeout=5)


def calls(server: RedisServer, command: str) -> int:
    stats = admin(server).info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if isinstance(entry, dict) else 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def key() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


# --- the contract -----------------------------------------------------------------------------------


def test_redis_backend_passes_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--backend", "redis"]) == 0
    assert "0 failed" in capsys.readouterr().out


def test_contract_durability_rule_passes_on_a_server_with_aof() -> None:
    with provisioned(backend_target("redis", persistence=True)) as env:
        [result] = run_contract(env.client_factory(), server=env,
                                rules=[find_rule("declared_durability_holds_across_restart")])
    assert result.status == "passed", result.message


# The rule each broken adapter must at least fail (it may fail others too).
EXPECTED_RULE = {
    "release_without_owner_check": "release_by_other_owner_fails",
    "renew_without_owner_check": "renew_by_other_owner_fails",
    "check_then_set_acquire": "acquire_is_atomic_under_contention",
    "non_increasing_token": "tokens_increase_across_release",
    "no_expiry": "expired_lease_frees_key",
    "seconds_expiry": "declared_ttl_rounding_is_applied",
    "durable_without_aof": "declared_durability_holds_across_restart",
}


def test_every_broken_redis_adapter_has_an_expected_rule() -> None:
    assert set(EXPECTED_RULE) == set(BROKEN)


@pytest.mark.parametrize("name", sorted(EXPECTED_RULE))
def test_broken_redis_adapter_fails_the_contract(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["contract", "--adapter", f"tests.broken_redis_adapters:{name}", "--server", "redis"])
    out = capsys.readouterr().out
    assert status == 1, out
    failed_line = next(line for line in out.splitlines() if "rule(s) failed" in line)
    assert EXPECTED_RULE[name] in failed_line


# --- declared capabilities and durability -------------------------------------------------------------


def test_capabilities_are_millisecond_fencing_and_not_durable_without_aof(shared: RedisServer) -> None:
    with open_redis(shared.url) as lock:
        assert isinstance(lock, LockBackend)
        assert lock.name == "redis"
        caps = lock.capabilities
        assert (caps.ttl_granularity_ms, caps.min_ttl_ms, caps.fencing_tokens) == (1, 1, True)
        assert caps.expiry_lag_ms == EXPIRY_LAG_MS <= 5
        assert caps.durable is False


def test_durable_is_declared_only_with_aof_and_fsync_always() -> None:
    with RedisServer(persistence=True) as aof:
        with open_redis(aof.url) as lock:
            assert lock.capabilities.durable is True
        with open_redis(aof.url + "?durable=0") as lock:
            assert lock.capabilities.durable is False
        admin(aof).config_set("appendfsync", "everysec")  # may lose the last second: not durable
        with open_redis(aof.url) as lock:
            assert lock.capabilities.durable is False


def test_durable_override_declares_what_it_is_told(shared: RedisServer) -> None:
    with open_redis(shared.url + "?durable=1") as lock:
        assert lock.capabilities.durable is True
    with open_redis(shared.url + "?durable=auto") as lock:
        assert lock.capabilities.durable is False


def test_durable_auto_is_false_when_config_is_refused() -> None:
    with RedisServer(persistence=True) as aof:
        admin(aof).acl_setuser("locker", enabled=True, passwords=["+s3cret"], keys=["*"],
                               commands=["+@all", "-config"])
        with open_redis(f"redis://locker:s3cret@{aof.host}:{aof.port}/0") as lock:
            assert lock.capabilities.durable is False
            assert lock.acquire(key(), "a", 1000) is not None  # the scripts still run


def test_wrong_password_or_forbidden_scripts_are_configuration_errors(private: RedisServer) -> None:
    admin(private).acl_setuser("noscripts", enabled=True, passwords=["+pw"], keys=["*"],
                               commands=["+@all", "-@scripting"])
    with pytest.raises(ConfigurationError, match="credentials"):
        open_backend(f"redis://noscripts:wrong@{private.host}:{private.port}/0")
    with pytest.raises(ConfigurationError, match="refused the adapter's setup"):
        open_backend(f"redis://noscripts:pw@{private.host}:{private.port}/0")


def test_lock_and_token_counter_survive_kill9_and_restart_with_aof() -> None:
    with RedisServer(persistence=True) as server:
        k = key()
        with open_redis(server.url) as lock:
            first = lock.acquire(k, "a", 60_000)
            assert first is not None and first.token == 1
            assert lock.release(k, "a")
            held = lock.acquire(k, "b", 60_000)
            assert held is not None and held.token == 2
        server.kill()  # SIGKILL: only what AOF fsynced survives
        server.restart()
        with open_redis(server.url) as lock:
            assert lock.holder(k) == held
            assert lock.acquire(k, "c", 1000) is None
            assert lock.release(k, "b")
            after = lock.acquire(k, "c", 1000)
            assert after is not None and after.token == 3


def test_restart_without_persistence_loses_the_lock_and_tokens_restart_at_1(private: RedisServer) -> None:
    k = key()
    with open_redis(private.url) as lock:
        for owner in ("a", "b", "c"):
            lease = lock.acquire(k, owner, 60_000)
            assert lease is not None and lock.release(k, owner)
        held = lock.acquire(k, "d", 60_000)
        assert held is not None and held.token == 4
        private.kill()
        private.restart()
        # The same client carries on: its dead pooled connection is replaced before the next send.
        assert lock.holder(k) is None
        again = lock.acquire(k, "e", 60_000)
        assert again is not None and again.token == 1  # the fencing hazard, as documented


# --- timeouts, dead servers, no silent retries ----------------------------------------------------------


@pytest.mark.parametrize("op", ["acquire", "renew", "release"])
def test_timed_out_write_raises_backend_unavailable_in_time_and_is_not_retried(
    private: RedisServer, op: str
) -> None:
    k = key()
    with open_redis(private.url + "?timeout_ms=300") as lock:
        if op != "acquire":
            assert lock.acquire(k, "a", 60_000) is not None
        admin(private).config_resetstat()
        private.pause()  # SIGSTOP: the request reaches the socket, no reply comes
        start = time.monotonic()
        try:
            with pytest.raises(BackendTimeout) as raised:
                if op == "acquire":
                    lock.acquire(k, "a", 60_000)
                elif op == "renew":
                    lock.renew(k, "a", 60_000)
                else:
                    lock.release(k, "a")
            elapsed = time.monotonic() - start
        finally:
            private.resume()
        assert isinstance(raised.value, BackendUnavailable)  # indeterminate, in the history's terms
        assert "outcome unknown" in str(raised.value)
        assert 0.25 <= elapsed < 0.8, elapsed
        # The one copy that was sent is applied after the resume; a retry would show a second one.
        deadline = time.monotonic() + 2
        while calls(private, "evalsha") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert calls(private, "evalsha") == 1
        if op == "acquire":
            assert calls(private, "incr") == 1
            seen = lock.holder(k)
            assert seen is not None and (seen.owner, seen.token) == ("a", 1)  # it did take effect
        elif op == "release":
            assert lock.holder(k) is None


def test_timed_out_holder_raises_after_one_timeout_without_retrying(private: RedisServer) -> None:
    k = key()
    with open_redis(private.url + "?timeout_ms=300") as lock:
        assert lock.acquire(k, "a", 60_000) is not None
        admin(private).config_resetstat()
        private.pause()
        start = time.monotonic()
        try:
            with pytest.raises(BackendTimeout):
                lock.holder(k)
            elapsed = time.monotonic() - start
        finally:
            private.resume()
        assert elapsed < 0.8, elapsed
        time.sleep(0.1)
        assert calls(private, "hmget") == 1


def test_calls_to_a_killed_server_raise_backend_unavailable_quickly(private: RedisServer) -> None:
    k = key()
    with open_redis(private.url) as lock:
        assert lock.acquire(k, "a", 60_000) is not None
        private.kill()
        for call in (lambda: lock.acquire(k, "b", 1000), lambda: lock.renew(k, "a", 1000),
                     lambda: lock.release(k, "a"), lambda: lock.holder(k)):
            start = time.monotonic()
            with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1"):
                call()
            assert time.monotonic() - start < 1.5


def test_unreachable_url_fails_with_a_clear_error_within_3s() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    start = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        open_backend(url)
    assert time.monotonic() - start < 3
    message = str(raised.value)
    assert "\n" not in message
    assert f"cannot reach redis at {url}" in message


def test_unreachable_server_is_an_infrastructure_error_for_the_harness() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    env = Provisioned(backend_target("redis"), url, handle=None)
    with pytest.raises(InfrastructureError, match="cannot reach"):
        probe_client(env)


def test_open_waits_for_a_server_that_comes_up_within_the_budget(private: RedisServer) -> None:
    private.kill()
    restarter = threading.Timer(0.5, private.restart)
    restarter.start()
    try:
        start = time.monotonic()
        with open_redis(private.url) as lock:
            assert 0.4 < time.monotonic() - start < 3
            assert lock.acquire(key(), "a", 1000) is not None
    finally:
        restarter.join()


def test_bad_input_raises_value_error_before_any_io(private: RedisServer) -> None:
    with open_redis(private.url + "?timeout_ms=2000") as lock:
        bad: list[tuple[str, tuple[object, ...]]] = [
            ("acquire", ("", "a", 100)), ("acquire", ("k", None, 100)), ("acquire", ("k", "a", 0)),
            ("acquire", ("k", "a", 1.5)), ("renew", ("k", "a", True)), ("release", ("k", 7)),
            ("holder", (b"k",)), ("acquire", ("k", "a", 2**70)),
        ]
        private.pause()  # any I/O would now hang for the 2 s timeout
        try:
            start = time.monotonic()
            for op, args in bad:
                with pytest.raises(ValueError):
                    getattr(lock, op)(*args)
            assert time.monotonic() - start < 0.2
        finally:
            private.resume()


def test_closed_client_refuses_calls(shared: RedisServer) -> None:
    lock = open_redis(shared.url)
    lock.close()
    with pytest.raises(LockChaosError, match="closed"):
        lock.holder(key())


# --- keys and configuration -----------------------------------------------------------------------------


def test_keys_live_under_the_prefix_and_nothing_else_is_written(private: RedisServer) -> None:
    prefix = f"run-{uuid.uuid4().hex[:6]}:"
    with open_redis(f"{private.url}?prefix={prefix}") as lock:
        assert lock.acquire("held", "a", 60_000) is not None
        assert lock.renew("held", "a", 60_000) is not None
        assert lock.acquire("freed", "a", 60_000) is not None
        assert lock.release("freed", "a")
        assert lock.acquire("expired", "a", 1) is not None
        assert lock.holder("never") is None
        assert lock.release("never", "a") is False
        assert lock.renew("never", "a", 100) is None
        time.sleep(0.01)
        written = set(admin(private).scan_iter("*"))
    assert written == {f"{prefix}{{held}}:lock", f"{prefix}{{held}}:token",
                       f"{prefix}{{freed}}:token", f"{prefix}{{expired}}:token"}
    assert admin(private).hgetall(f"{prefix}{{held}}:lock") == {"owner": "a", "token": "1", "ttl": "60000"}


def test_lock_and_counter_keys_share_a_hash_slot_and_keys_map_injectively(shared: RedisServer) -> None:
    tricky = ["a{b}", "a%7Bb}", "}x", "{}", "%", "%25", "plain", "x}{y"]
    with open_redis(shared.url) as lock:
        lock_keys = {lock.lock_key(k) for k in tricky}
        assert len(lock_keys) == len(tricky)
        for k in tricky:
            assert key_slot(lock.lock_key(k).encode()) == key_slot(lock.counter_key(k).encode())
            assert lock.acquire(k, "a", 10_000) == Lease(k, "a", 1, 10_000)  # independent keys
        assert all(lock.release(k, "a") for k in tricky)


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("?bogus=1", "unknown redis URL option"),
        ("?timeout_ms=abc", "timeout_ms"),
        ("?timeout_ms=0", "timeout_ms"),
        ("?timeout_ms=-5", "timeout_ms"),
        ("?durable=maybe", "durable must be auto, 0 or 1"),
        ("?prefix=", "prefix must not be empty"),
        ("?prefix=a{b", "prefix"),
        ("?timeout_ms=5&timeout_ms=6", "more than once"),
    ],
)
def test_bad_url_options_raise_configuration_error(query: str, complaint: str) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0{query}"
    start = time.monotonic()
    with pytest.raises(ConfigurationError, match=complaint) as raised:
        open_backend(url)
    assert "\n" not in str(raised.value)
    assert time.monotonic() - start < 0.5  # rejected before any connection attempt


@pytest.mark.parametrize("url", ["redis://127.0.0.1:99999/0", "redis://127.0.0.1:6379/zero",
                                 "redis://127.0.0.1:6379/-1"])
def test_bad_host_port_or_db_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_backend(url)


def test_password_never_appears_in_messages() -> None:
    url = f"redis://user:hunter2@127.0.0.1:{closed_port()}/0"
    with pytest.raises(BackendUnavailable) as raised:
        open_backend(url)
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigurationError) as bad:
        open_backend(url + "?nope=1")
    assert "hunter2" not in str(bad.value)


def test_database_number_selects_the_database(shared: RedisServer) -> None:
    base = shared.url.rsplit("/", 1)[0]
    k = key()
    with open_redis(f"{base}/3") as db3, open_redis(f"{base}/0") as db0:
        assert db3.acquire(k, "a", 10_000) is not None
        assert db0.holder(k) is None
        assert redis.Redis(host=shared.host, port=shared.port, db=3).exists(db3.lock_key(k)) == 1


# --- expiry -------------------------------------------------------------------------------------------


def test_declared_expiry_lag_covers_the_measured_lag(shared: RedisServer) -> None:
    """A holder probe that starts after grant completion + TTL + declared lag never sees the lease."""
    ttl = 10
    with open_redis(shared.url) as lock:
        assert isinstance(lock, RedisLock)
        lag = lock.capabilities.expiry_lag_ms
        for i in range(30):
            k = f"{key()}-{i}"
            assert lock.acquire(k, "a", ttl) is not None
            granted = time.monotonic_ns()
            time.sleep((ttl + lag) / 1000)
            while time.monotonic_ns() <= granted + (ttl + lag) * 1_000_000:
                pass
            assert lock.holder(k) is None, f"lease visible more than {lag} ms past its TTL"
