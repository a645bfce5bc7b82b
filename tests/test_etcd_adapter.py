"""The etcd adapter against a real ``etcd`` (harness.servers.process.EtcdServer): no mocks anywhere."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import etcd3
import pytest

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendTimeout, BackendUnavailable, ConfigurationError, Lease, LockBackend
from lockchaos.backends.etcd import EtcdLock, open_etcd, parse_etcd_url
from lockchaos.harness.cli import main
from lockchaos.harness.contract.failover_rules import CLUSTER_ONLY_RULES
from lockchaos.harness.contract.rules import rule_names
from lockchaos.harness.servers.process import EtcdServer

pytestmark = [
    pytest.mark.etcd,
]


@pytest.fixture(scope="module")
def shared() -> Iterator[EtcdServer]:
    """One server for the tests that do not fault it."""
    with EtcdServer() as server:
        yield server


@pytest.fixture
def own() -> Iterator[EtcdServer]:
    """A server of the test's own, for tests that kill, pause or inspect all of it."""
    with EtcdServer() as server:
        yield server


def client(server: EtcdServer, **options: str) -> EtcdLock:
    options.setdefault("prefix", f"t-{uuid.uuid4().hex[:8]}/")
    query = "&".join(f"{k}={v}" for k, v in options.items())
    backend = open_backend(f"{server.url}?{query}")
    assert isinstance(backend, EtcdLock)
    return backend


def wait_for(call: Callable[[], object], timeout: float = 5.0) -> object:
    """Call until it stops raising BackendUnavailable (a restarted server takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def observer(server: EtcdServer) -> Any:
    """A plain python3-etcd3 client, to look at the server without going through the adapter."""
    return etcd3.client(host=server.host, port=server.port, timeout=2)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the shipped contract ----------------------------------------------------------------------------


@pytest.mark.slow
def test_contract_passes_against_a_real_etcd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--backend", "etcd"]) == 0
    # Rules for what etcd does not declare (TTL truncation, refusals below the minimum) skip with the reason,
    # and so do the cluster-only failover rules on a single server.
    tally = re.search(r"(\d+) passed, 0 failed, (\d+) skipped", capsys.readouterr().out)
    assert tally is not None and int(tally[1]) + int(tally[2]) == len(rule_names())
    assert int(tally[2]) <= 3 + len(CLUSTER_ONLY_RULES)


# --- what the contract cannot see ---------------------------------------------------------------------


def test_capabilities_are_measured_from_the_server(shared: EtcdServer) -> None:
    with client(shared) as c:
        caps = c.capabilities
    assert c.name == "etcd"
    assert isinstance(c, LockBackend)
    assert caps.min_ttl_ms == shared.min_lease_ttl_ms == 1000  # fast flags: 1.5 * 100 ms -> 1 s
    assert (caps.ttl_granularity_ms, caps.durable, caps.fencing_tokens) == (1000, True, True)
    assert caps.expiry_lag_ms >= 600  # etcd revokes expired leases on a 500 ms loop


@pytest.mark.slow
def test_minimum_ttl_of_a_server_with_default_flags_is_two_seconds() -> None:
    with EtcdServer(fast=False) as server, client(server) as c:
        assert c.capabilities.min_ttl_ms == server.min_lease_ttl_ms == 2000
        lease = c.acquire("k", "a", 1)
        assert lease is not None and lease.ttl_ms == 2000


def test_lock_and_token_survive_kill_9_and_restart(own: EtcdServer) -> None:
    before = client(own)
    lease = before.acquire("durable", "a", 30_000)
    assert lease is not None
    own.kill()
    with pytest.raises(BackendUnavailable):
        before.holder("durable")
    own.restart()
    # The old client reconnects by itself (reconnect backoff capped at 500 ms) ...
    assert wait_for(lambda: before.holder("durable"), timeout=3.0) == lease
    # ... and a new one sees the same holder, token and TTL.
    with client(own, prefix=before.prefix) as after:
        assert after.holder("durable") == lease
        assert after.renew("durable", "a", 30_000) == lease
        assert after.release("durable", "a") is True
        again = after.acquire("durable", "b", 2000)
        assert again is not None and again.token > lease.token
    before.close()


@pytest.mark.slow
def test_a_restart_gives_every_lease_its_full_ttl_again(own: EtcdServer) -> None:
    """etcd behaviour the fake's restart does not model: a new leader (here: the restarted member)
    re-arms every lease to now + TTL (+ one election timeout), so a lease granted before a crash
    outlives its TTL + declared lag as seen from its grant."""
    with client(own) as c:
        start = time.monotonic()
        lease = c.acquire("rearmed", "a", 3000)
        assert lease is not None and lease.ttl_ms == 3000
        time.sleep(2.0)
        own.kill()
        own.restart()
        restarted = time.monotonic()
        time.sleep(2.5)
        probe_at = time.monotonic()
        seen = wait_for(lambda: c.holder("rearmed"))
        assert probe_at - start > (lease.ttl_ms + c.capabilities.expiry_lag_ms) / 1000
        assert time.monotonic() - restarted < lease.ttl_ms / 1000
        assert seen == lease


def test_failed_acquire_leaves_no_lease_behind(own: EtcdServer) -> None:
    with client(own, prefix="x/") as a, client(own, prefix="x/") as b:
        held = a.acquire("busy", "a", 10_000)
        assert held is not None
        leases_before = set(b.lease_ids())
        assert len(leases_before) == 1
        for i in range(20):
            assert b.acquire("busy", f"b{i}", 10_000) is None
        assert set(b.lease_ids()) == leases_before
        assert b.holder("busy") == held
        # Releasing revokes the lease too: nothing is left once the key is free.
        assert a.release("busy", "a") is True
        assert a.lease_ids() == []


def test_paused_server_makes_every_call_raise_within_about_the_timeout(own: EtcdServer) -> None:
    with client(own, timeout_ms="400") as c:
        assert c.acquire("p", "a", 5000) is not None
        own.pause()
        try:
            calls: dict[str, Callable[[], object]] = {
                "acquire": lambda: c.acquire("q", "a", 5000),
                "renew": lambda: c.renew("p", "a", 5000),
                "release": lambda: c.release("p", "a"),
                "holder": lambda: c.holder("p"),
            }
            for op, call in calls.items():
                start = time.monotonic()
                with pytest.raises(BackendTimeout, match="outcome unknown"):
                    call()
                spent = time.monotonic() - start
                assert 0.35 < spent < 1.0, f"{op} took {spent:.2f} s with a 400 ms timeout"
            # Opening a client against a paused server is bounded by connect_timeout_ms.
            start = time.monotonic()
            with pytest.raises(BackendUnavailable, match="cannot reach etcd"):
                open_etcd(f"{own.url}?timeout_ms=400&connect_timeout_ms=800")
            assert time.monotonic() - start < 1.5
        finally:
            own.resume()
        assert wait_for(lambda: c.holder("p")) is not None


def test_unreachable_url_is_one_clear_error_within_five_seconds() -> None:
    url = f"etcd://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        open_backend(url)
    assert time.monotonic() - start < 5.0
    message = str(err.value)
    assert url in message and "\n" not in message
    assert "cannot reach etcd" in message


def test_the_cli_reports_an_unreachable_server_as_infrastructure_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An adapter factory that points at a closed port: exit status 3, one line naming the URL.
    assert main(["contract", "--adapter", "tests.test_etcd_adapter:dead_port_factory",
                 "--server", "none"]) == 3
    assert "cannot reach etcd at etcd://127.0.0.1:" in capsys.readouterr().err


def dead_port_factory(url: str) -> LockBackend:
    return open_etcd(f"etcd://127.0.0.1:{closed_port()}?connect_timeout_ms=500")


def test_keys_live_under_the_prefix_only(own: EtcdServer) -> None:
    with client(own, prefix="only/here/") as c:
        for key in ("a", "b/c", "ü", " spaced "):
            assert c.acquire(key, "o", 5000) is not None
            assert c.renew(key, "o", 7000) is not None  # moves the key to a new lease
            assert c.holder(key) is not None
        assert c.release("a", "o") is True
    raw = observer(own)
    keys = sorted(meta.key.decode() for _value, meta in raw.get_all(keys_only=True))
    raw.close()
    assert keys == ["only/here/ spaced ", "only/here/b/c", "only/here/ü"]


def test_renew_with_another_ttl_moves_the_lease_and_keeps_the_token(shared: EtcdServer) -> None:
    raw = observer(shared)
    with client(shared) as c:
        first = c.acquire("move", "a", 2000)
        assert first is not None
        old_lease = raw.get(c.etcd_key("move"))[1].lease_id
        longer = c.renew("move", "a", 4500)
        assert longer == Lease("move", "a", first.token, 5000)
        _value, meta = raw.get(c.etcd_key("move"))
        new_lease = meta.lease_id
        assert new_lease != old_lease and meta.create_revision == first.token
        assert old_lease not in c.lease_ids()  # the old lease was revoked, not left to expire
        assert raw.get_lease_info(new_lease).grantedTTL == 5
        assert c.holder("move") == longer
        # Same TTL again: a keep-alive of the same lease, no move.
        assert c.renew("move", "a", 5000) == longer
        assert raw.get(c.etcd_key("move"))[1].lease_id == new_lease
        # A non-holder cannot move it.
        assert c.renew("move", "b", 9000) is None
        assert c.holder("move") == longer
    raw.close()


def test_several_endpoints_fail_over_to_one_that_answers(shared: EtcdServer) -> None:
    url = f"etcd://127.0.0.1:{closed_port()},{shared.host}:{shared.port}?prefix=multi/"
    for _ in range(3):  # the first endpoint tried is chosen at random
        with open_etcd(url) as c:
            lease = c.acquire("k", "a", 2000)
            assert lease is not None and c.holder("k") == lease
            assert c.release("k", "a") is True


@pytest.mark.parametrize(
    "url",
    [
        "etcd://",
        "etcd://host:notaport",
        "etcd://host:99999",
        "etcd://host:0",
        "etcd://host:2379/some/path",
        "etcd://host:2379?bogus=1",
        "etcd://host:2379?timeout_ms=0",
        "etcd://host:2379?timeout_ms=1.5",
        "etcd://host:2379?timeout_ms=1&timeout_ms=2",
        "etcd://host:2379?connect_timeout_ms=soon",
        "etcd://host:2379?prefix=",
        "etcd://user:secret@host:2379",
        "etcd://a:1,,b:2",
        "etcd://a:1,a:1",
        "etcd://host:2379#frag",
        "redis://host:2379",
        "host:2379",
    ],
)
def test_bad_url_is_a_configuration_error_before_any_io(url: str) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigurationError) as err:
        open_etcd(url)
    assert time.monotonic() - start < 0.5
    assert "\n" not in str(err.value)


def test_good_urls_parse() -> None:
    cfg = parse_etcd_url("etcd://a:1,[::1]:2,b?prefix=x/&timeout_ms=250&connect_timeout_ms=900")
    assert cfg.endpoints == (("a", 1), ("[::1]", 2), ("b", 2379))
    assert (cfg.prefix, cfg.timeout_ms, cfg.connect_timeout_ms) == ("x/", 250, 900)
    assert parse_etcd_url("etcd://a:1/").prefix == "lockchaos/"


def test_bad_input_is_rejected_before_any_io_even_when_the_server_is_down(own: EtcdServer) -> None:
    c = client(own)
    own.kill()
    try:
        for bad in (lambda: c.acquire("", "o", 1000), lambda: c.renew("k", "o", 0),
                    lambda: c.release("k", ""), lambda: c.acquire("k", "o", 10**16)):
            with pytest.raises(ValueError):
                bad()
    finally:
        c.close()
