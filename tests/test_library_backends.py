"""The shipped lock-library backends against real servers: the contract rules each one keeps, and the
library defects lockchaos finds in them (each test pins one defect, read from the library's source).

Rules not listed in ``KEEPS`` compare owners or tokens that a tokenless, presence-only lock cannot give
(until the contract judges ``holder_info`` and ``fencing_tokens=False``: issue 13, part 1), or show a
library defect tested below.
"""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing

import pytest
import redis

from lockchaos.backends.base import BackendTimeout, BackendUnavailable, LockBackend
from lockchaos.backends.etcd import open_etcd
from lockchaos.backends.libs import LIBRARIES
from lockchaos.harness.cli import main
from lockchaos.harness.contract.rules import find_rule
from lockchaos.harness.contract.runner import RuleResult, run_rule
from lockchaos.harness.run.targets import LIBRARY_BACKENDS, backend_names, backend_target
from lockchaos.harness.servers.process import EtcdServer, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.etcd]

KEEPS_EVERYWHERE = (
    "renew_many_times_keeps_the_lease",
    "renew_of_free_key_fails",
    "release_by_owner_frees_key",
    "release_of_free_key_fails",
    "bad_input_raises_value_error",
)
KEEPS: dict[str, tuple[str, ...]] = {
    "redis-py-lock": (*KEEPS_EVERYWHERE, "renew_after_expiry_fails", "expired_lease_frees_key",
                      "declared_ttl_rounding_is_applied", "declared_minimum_ttl_is_applied"),
    "python-redis-lock": (*KEEPS_EVERYWHERE, "renew_after_expiry_fails", "expired_lease_frees_key",
                          "declared_ttl_rounding_is_applied"),
    "python-redis-lock-autorenew": KEEPS_EVERYWHERE,  # expiry rules: its own thread renews (by design)
    "pottery": (*KEEPS_EVERYWHERE, "renew_after_expiry_fails", "expired_lease_frees_key",
                "declared_ttl_rounding_is_applied"),
    "sherlock": (*KEEPS_EVERYWHERE, "renew_after_expiry_fails", "expired_lease_frees_key"),
    "etcd3-lock": (*KEEPS_EVERYWHERE, "expired_lease_frees_key", "declared_ttl_rounding_is_applied",
                   "declared_minimum_ttl_is_applied"),
}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


def url_for(name: str, redis_server: RedisServer, etcd_server: EtcdServer) -> str:
    return etcd_server.url if LIBRARIES[name].server_kind == "etcd" else redis_server.url


def opener(name: str, url: str) -> LockBackend:
    return backend_target(name).open(url)


def rule_result(name: str, url: str, rule: str) -> RuleResult:
    return run_rule(find_rule(rule), lambda: opener(name, url))


def key() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


# --- registry ---------------------------------------------------------------------------------------


def test_every_library_backend_has_its_kept_rules_listed() -> None:
    assert set(KEEPS) == set(LIBRARY_BACKENDS) == set(LIBRARIES)


def test_backend_libs_means_every_library_and_all_keeps_meaning_our_backends() -> None:
    assert backend_names("libs") == LIBRARY_BACKENDS
    assert backend_names("all") == ("fake", "redis", "etcd")
    assert backend_names("pottery") == ("pottery",)


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_library_target_can_be_sent_to_a_worker_process(name: str) -> None:
    target = backend_target(name)
    assert pickle.loads(pickle.dumps(target)) == target


def test_library_backend_refuses_an_external_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--backend", "pottery", "--url", "redis://127.0.0.1:1/0"]) == 2
    assert "harness starts" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_library_backend_declares_a_tokenless_presence_only_lock(
        name: str, redis_server: RedisServer, etcd_server: EtcdServer) -> None:
    with closing(opener(name, url_for(name, redis_server, etcd_server))) as lock:
        assert isinstance(lock, LockBackend)
        assert lock.capabilities.fencing_tokens is False
        assert lock.capabilities.holder_info == "presence"
        k = key()
        lease = lock.acquire(k, "a", 3000)
        assert lease is not None and lease.token is None and lease.owner == "a"
        assert lock.holder(k) is not None
        assert lock.release(k, "a") is True
        assert lock.holder(k) is None


# --- the contract rules each library keeps --------------------------------------------------------


@pytest.mark.parametrize(("name", "rule"), [(n, r) for n in sorted(KEEPS) for r in KEEPS[n]])
def test_library_backend_keeps_contract_rule(name: str, rule: str, redis_server: RedisServer,
                                             etcd_server: EtcdServer) -> None:
    result = rule_result(name, url_for(name, redis_server, etcd_server), rule)
    assert result.status == "passed", result.message


# --- python-redis-lock: int(expire) ------------------------------------------------------------------


def test_python_redis_lock_truncates_ttls_to_whole_seconds(redis_server: RedisServer) -> None:
    with closing(opener("python-redis-lock", redis_server.url)) as lock:
        k = key()
        lease = lock.acquire(k, "a", 1900)
        assert lease is not None and lease.ttl_ms == 1000
        pttl = redis.Redis(host="127.0.0.1", port=redis_server.port).pttl(f"lock:lockchaos:{k}")
        assert 0 < pttl <= 1000


def test_python_redis_lock_sub_second_acquire_sends_set_ex_0(redis_server: RedisServer) -> None:
    result = rule_result("python-redis-lock", redis_server.url, "declared_minimum_ttl_is_applied")
    assert result.status == "failed"
    assert "invalid expire time in 'set' command" in result.message


def test_python_redis_lock_sub_second_extend_deletes_the_lock_and_returns_normally(
        redis_server: RedisServer) -> None:
    with closing(opener("python-redis-lock", redis_server.url)) as lock:
        k = key()
        assert lock.acquire(k, "a", 5000) is not None
        renewed = lock.renew(k, "a", 500)  # extend(expire=0.5) -> EXPIRE key 0
        assert renewed is not None, "the library reported the extension as done"
        assert lock.holder(k) is None, "yet the key is gone: EXPIRE 0 deleted it"
        assert lock.acquire(k, "b", 5000) is not None, "and another owner takes it at once"


# --- sherlock: SETNX then EXPIRE ---------------------------------------------------------------------


def test_sherlock_fractional_ttl_leaves_a_lock_that_never_expires(redis_server: RedisServer) -> None:
    result = rule_result("sherlock", redis_server.url, "declared_ttl_rounding_is_applied")
    assert result.status == "failed"
    assert "not an integer" in result.message
    with closing(opener("sherlock", redis_server.url)) as lock:
        k = key()
        with pytest.raises(redis.ResponseError):
            lock.acquire(k, "a", 1500)  # SETNX applied, then EXPIRE '1.5' failed inside the script
        assert redis.Redis(host="127.0.0.1", port=redis_server.port).pttl(f"lockchaos:{k}") == -1, "held with no TTL"
        assert lock.acquire(k, "b", 1000) is None, "nobody can take it, ever"


# --- pottery: the uuid is replaced before SET NX -------------------------------------------------------


def test_pottery_failed_reacquire_orphans_the_held_lease(redis_server: RedisServer) -> None:
    with closing(opener("pottery", redis_server.url)) as lock:
        k = key()
        assert lock.acquire(k, "a", 5000) is not None
        assert lock.acquire(k, "a", 5000) is None  # refused, but Redlock._acquire_masters set a new uuid
        assert lock.holder(k) is not None, "the first lease still holds the key"
        assert lock.renew(k, "a", 5000) is None, "and its holder can no longer extend it"
        assert lock.release(k, "a") is False, "nor release it: it stays locked until its TTL"
        assert lock.holder(k) is not None


# --- python3-etcd3 -----------------------------------------------------------------------------------


def test_etcd3_lock_refresh_succeeds_after_the_lease_expired(etcd_server: EtcdServer) -> None:
    result = rule_result("etcd3-lock", etcd_server.url, "renew_after_expiry_fails")
    assert result.status == "failed"
    assert "renew after expiry returned Lease" in result.message


def test_etcd3_lock_leaks_a_lease_per_failed_acquire_and_release_keeps_its_lease(
        etcd_server: EtcdServer) -> None:
    with closing(opener("etcd3-lock", etcd_server.url)) as lock, open_etcd(etcd_server.url) as admin:
        k = key()
        assert lock.acquire(k, "a", 60_000) is not None
        before = set(admin.lease_ids())
        for i in range(3):
            assert lock.acquire(k, f"b{i}", 60_000) is None
        leaked = set(admin.lease_ids()) - before
        assert len(leaked) == 3, f"each failed acquire left its lease behind: {leaked}"
        assert lock.release(k, "a") is True
        assert lock.holder(k) is None
        assert len(set(admin.lease_ids()) & (before | leaked)) >= 4, "release did not revoke the holder's lease"


def test_etcd3_client_refuses_every_call_after_one_timeout() -> None:
    with EtcdServer() as server:
        url = f"{server.url}?timeout_ms=300"
        with closing(opener("etcd3-lock", url)) as lock:
            server.pause()
            try:
                with pytest.raises(BackendUnavailable):
                    lock.acquire(key(), "a", 3000)
            finally:
                server.resume()
            with open_etcd(server.url) as ours:
                assert ours.acquire(key(), "b", 3000) is not None, "the server answers again"
            with pytest.raises(BackendUnavailable, match="marked its only endpoint failed"):
                lock.acquire(key(), "a", 3000)


# --- redis-py: hidden retries ------------------------------------------------------------------------


@pytest.mark.slow
def test_redis_py_lock_call_blocks_far_beyond_its_timeout_through_silent_retries() -> None:
    with RedisServer() as server:
        timeout_ms = 100
        with closing(opener("redis-py-lock", f"{server.url}?timeout_ms={timeout_ms}")) as lock:
            k = key()
            assert lock.acquire(k, "a", 1000) is not None
            server.pause()
            try:
                start = time.monotonic()
                with pytest.raises(BackendTimeout):
                    lock.release(k, "a")
                blocked = time.monotonic() - start
            finally:
                server.resume()
        assert blocked > 10 * timeout_ms / 1000, f"one release blocked {blocked:.1f} s under a {timeout_ms} ms timeout"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["redis-py-lock", "sherlock"])
def test_retried_acquire_reports_failure_for_a_lock_it_took(name: str) -> None:
    """SET NX sent into a paused server times out; redis-py re-sends it; the first copy is applied on
    resume, so the retry finds the key held and acquire() says False: the key is held by a token nobody
    has, until its TTL (lockchaos soak: server-pause, conformance refused-free-key)."""
    with RedisServer() as server, closing(opener(name, f"{server.url}?timeout_ms=200")) as lock:
        outcome: object = "not tried"
        k = key()
        for _attempt in range(3):  # inconclusive (the retries outlasted the pause): again, on a fresh key
            k = key()
            server.pause()
            resumer = threading.Timer(0.5, server.resume)
            resumer.start()
            try:
                outcome = lock.acquire(k, "a", 60_000)
            except BackendUnavailable as exc:
                outcome = exc
            finally:
                resumer.join()
                server.resume()
            if outcome is None:
                break
        assert outcome is None, f"acquire gave {outcome!r} in 3 tries, never the refused-but-taken case"
        assert lock.holder(k) is not None, "the refused acquire holds the key"
        assert lock.renew(k, "a", 60_000) is None, "its owner cannot renew it"
        assert lock.release(k, "a") is False, "nor release it"
        assert lock.acquire(k, "b", 1000) is None, "and nobody else gets it before its TTL"


@pytest.mark.slow
def test_pottery_says_not_yours_for_a_release_it_applied() -> None:
    """A release sent into a paused server times out; redis-py re-sends it; the first copy frees the key on
    resume, the retry finds it gone, and Redlock.release() (raise_on_redis_errors=False) answers
    ReleaseUnlockedLock: 'you did not hold it' (lockchaos soak: release-lost, exclusion-grants double-grant)."""
    with RedisServer() as server, closing(opener("pottery", f"{server.url}?timeout_ms=200")) as lock:
        outcome: object = "not tried"
        k = key()
        for _attempt in range(3):  # inconclusive (the retries outlasted the pause): again, on a fresh key
            k = key()
            assert lock.acquire(k, "a", 60_000) is not None
            server.pause()
            resumer = threading.Timer(0.5, server.resume)
            resumer.start()
            try:
                outcome = lock.release(k, "a")
            except BackendUnavailable as exc:
                outcome = exc
            finally:
                resumer.join()
                server.resume()
            if outcome is False:
                break
        assert outcome is False, f"release gave {outcome!r} in 3 tries, never the 'not yours' answer"
        assert lock.holder(k) is None, "yet the release was applied: the key is free"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # NotAcquired in its thread
def test_python_redis_lock_reacquire_after_its_renewal_thread_died_raises_while_holding(
        redis_server: RedisServer) -> None:
    """The auto-renewal thread dies on its first failed extend (NotAcquired raised in the thread) but stays
    registered; the next acquire() on that Lock object takes the key, then raises AlreadyStarted: the
    caller is told it failed while it holds a lock nobody renews (soak: partition-holder, error-handling)."""
    import redis_lock

    with closing(opener("python-redis-lock-autorenew", redis_server.url)) as lock:
        k = key()
        assert lock.acquire(k, "a", 1000) is not None
        redis.Redis(host="127.0.0.1", port=redis_server.port).delete(f"lock:lockchaos:{k}")  # lost, e.g. expired
        [(_, _, handle)] = [entry for entry in lock.lock_objects() if entry[0] == k]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while handle._lock_renewal_thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not handle._lock_renewal_thread.is_alive(), "the renewal thread died on NotAcquired"
        with pytest.raises(redis_lock.AlreadyStarted):
            lock.acquire(k, "a", 1000)
        assert lock.holder(k) is not None, "yet the acquire took the key"


# --- issue 13: harness false alarms ------------------------------------------------------------------


def test_durability_rule_releases_through_the_client_that_holds_the_library_lock(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A library keeps ownership in the acquiring client's lock object: a second client cannot release.

    The rule used to release through a fresh client after the restart, which failed for every library.
    """
    assert main(["contract", "--backend", "redis-py-lock"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "release after restart failed" not in out


def test_pottery_keeps_every_contract_rule_with_its_redlock_minimum(capsys: pytest.CaptureFixture[str]) -> None:
    """pottery never grants below its Redlock validity floor; declared as a refusal, it conforms. The one
    rule it fails is its known defect: on a frozen server it answers a timed-out renew or release as a
    refusal (or blocks past the bound in redis-py's retries), never as an unknown outcome."""
    status = main(["contract", "--backend", "pottery"])
    out = capsys.readouterr().out
    assert status == 1, out
    failed = next(line for line in out.splitlines() if "rule(s) failed" in line)
    assert "1 rule(s) failed" in failed
    assert failed.rstrip().endswith("calls_to_a_frozen_server_raise_backend_unavailable")


def test_pottery_refuses_below_its_minimum_and_grants_at_it(redis_server: RedisServer) -> None:
    from lockchaos.backends.libs.pottery_redlock import MIN_TTL_MS

    with closing(opener("pottery", redis_server.url)) as lock:
        assert lock.capabilities.min_ttl_ms == MIN_TTL_MS and lock.capabilities.refuses_below_min
        k = key()
        with pytest.raises(ValueError, match="validity"):
            lock.acquire(k, "a", MIN_TTL_MS - 1)
        assert lock.holder(k) is None
        assert lock.acquire(key(), "a", MIN_TTL_MS) is not None


def test_autorenew_declares_background_renewal_and_its_expiry_rules_are_skipped_with_the_reason(
        redis_server: RedisServer, etcd_server: EtcdServer) -> None:
    name = "python-redis-lock-autorenew"
    with closing(opener(name, redis_server.url)) as lock:
        assert lock.capabilities.renews_in_background is True
    with closing(opener("python-redis-lock", redis_server.url)) as plain:
        assert plain.capabilities.renews_in_background is False
    for rule in ("expired_lease_frees_key", "renew_after_expiry_fails", "release_after_expiry_fails",
                 "renewed_lease_still_expires", "holder_from_the_same_client_sees_its_lease_expire"):
        result = rule_result(name, redis_server.url, rule)
        assert result.status == "skipped" and "renews_in_background" in result.message, (rule, result)
