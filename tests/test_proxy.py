"""The fault proxy between real clients and real servers: real sockets, real bytes, no mocks."""

from __future__ import annotations

import math
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.harness.faults.proxy import SPLICE_AVAILABLE, FaultProxy, ProxyPool
from lockchaos.harness.servers.process import EtcdServer, RedisServer
from tests.proxy_helpers import heal_all

pytestmark = [pytest.mark.redis, pytest.mark.etcd]

PING = b"PING\r\n"
PONG = b"+PONG\r\n"


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port, name="test") as p:
        yield p


@pytest.fixture
def client() -> Iterator[Callable[..., redis.Redis]]:
    """redis-py clients that never retry, so each fault shows as the error the client really got."""
    made: list[redis.Redis] = []

    def make(port: int, timeout: float = 0.3) -> redis.Redis:
        c = redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def raw() -> Iterator[Callable[[int], socket.socket]]:
    made: list[socket.socket] = []

    def connect(port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        made.append(sock)
        return sock

    yield connect
    for sock in made:
        sock.close()


def round_trip(c: redis.Redis) -> float:
    t0 = time.perf_counter()
    assert c.ping()
    return time.perf_counter() - t0


def test_bytes_flow_through_to_redis(
    proxy: FaultProxy, redis_server: RedisServer, client: Callable[..., redis.Redis]
) -> None:
    c = client(proxy.port)
    assert c.ping()
    assert c.set("flow", "through")
    assert c.get("flow") == b"through"
    assert client(redis_server.port).get("flow") == b"through"  # it really reached the server
    stats = proxy.stats()
    assert (stats.accepted, stats.open, stats.reset, stats.bytes_dropped) == (1, 1, 0, 0)
    assert stats.bytes_up > 0 and stats.bytes_down > 0


def test_large_values_and_concurrent_clients_pass_intact(
    proxy: FaultProxy, client: Callable[..., redis.Redis]
) -> None:
    """Megabytes each way exercise partial sends and the bounded queues (back-pressure)."""
    big = os.urandom(6 << 20)
    c = client(proxy.port, timeout=10.0)
    assert c.set("big", big) and c.get("big") == big
    proxy.set_latency(5)
    assert c.get("big") == big
    proxy.heal()
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            w = client(proxy.port, timeout=5.0)
            for j in range(30):
                assert w.set(f"w{i}", j) and w.get(f"w{i}") == str(j).encode()
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert not failures
    assert proxy.stats().accepted == 17 and proxy.stats().bytes_dropped == 0


def test_url_for_points_redis_and_etcd_urls_at_the_proxy(
    proxy: FaultProxy, redis_server: RedisServer
) -> None:
    assert proxy.url_for(redis_server.url) == f"redis://127.0.0.1:{proxy.port}/0"
    assert (
        proxy.url_for(f"redis://:secret@localhost:{redis_server.port}/3?x=1")
        == f"redis://:secret@127.0.0.1:{proxy.port}/3?x=1"
    )
    for wrong in (
        f"redis://127.0.0.1:{redis_server.port + 1}/0",  # another server: would fault the wrong link
        f"http://127.0.0.1:{redis_server.port}",
        f"etcd://127.0.0.1:{redis_server.port},127.0.0.1:2",
    ):
        with pytest.raises(ConfigurationError):
            proxy.url_for(wrong)
    with FaultProxy("localhost", 2379) as etcd_proxy:
        assert etcd_proxy.url_for("etcd://localhost") == f"etcd://127.0.0.1:{etcd_proxy.port}"
        assert etcd_proxy.url_for("etcd://127.0.0.1:2379") == f"etcd://127.0.0.1:{etcd_proxy.port}"


def test_blackhole_makes_redis_calls_time_out_without_reset(
    proxy: FaultProxy, client: Callable[..., redis.Redis], raw: Callable[[int], socket.socket]
) -> None:
    c = client(proxy.port)
    assert c.ping()
    sock = raw(proxy.port)
    proxy.blackhole()
    t0 = time.monotonic()
    with pytest.raises(redis.TimeoutError) as caught:
        c.get("k")
    assert 0.25 < time.monotonic() - t0 < 2.0
    assert not isinstance(caught.value, redis.ConnectionError)
    with pytest.raises(redis.TimeoutError):  # a new connection is accepted, and then hears nothing
        client(proxy.port).ping()
    sock.sendall(PING)
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):  # neither a reply, nor a FIN (b""), nor a reset
        sock.recv(100)
    stats = proxy.stats()
    assert stats.bytes_dropped >= len(PING) and stats.reset == 0


def test_heal_after_blackhole_restores_new_connections(
    proxy: FaultProxy, client: Callable[..., redis.Redis]
) -> None:
    c = client(proxy.port)
    assert c.ping()
    proxy.blackhole()
    with pytest.raises(redis.TimeoutError):
        c.ping()
    proxy.heal()
    assert c.ping()  # redis-py dropped its timed-out connection and dialled again
    assert client(proxy.port).ping()


def test_heal_resumes_traffic_on_surviving_connections_but_blackholed_bytes_stay_lost(
    proxy: FaultProxy, raw: Callable[[int], socket.socket]
) -> None:
    sock = raw(proxy.port)
    proxy.blackhole()
    sock.sendall(PING)
    time.sleep(0.05)
    proxy.heal()
    sock.sendall(PING)
    assert sock.recv(100) == PONG
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):  # the blackholed PING never reached the server
        sock.recv(100)


def test_reset_aborts_existing_connections(
    proxy: FaultProxy, redis_server: RedisServer, client: Callable[..., redis.Redis],
    raw: Callable[[int], socket.socket],
) -> None:
    direct = client(redis_server.port)
    before = len(direct.client_list())
    sock = raw(proxy.port)
    sock.sendall(PING)
    assert sock.recv(100) == PONG
    c = client(proxy.port, timeout=3.0)
    assert c.ping()
    assert wait_until(lambda: len(direct.client_list()) == before + 2)

    proxy.set_latency(1000)  # holds c's next PING in the proxy, so that the reset lands mid-call
    errors: list[BaseException] = []

    def call() -> None:
        try:
            c.ping()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    t0 = time.monotonic()
    worker.start()
    time.sleep(0.1)
    proxy.reset()
    worker.join(3)
    assert time.monotonic() - t0 < 0.9
    assert len(errors) == 1 and isinstance(errors[0], redis.ConnectionError), errors
    with pytest.raises(ConnectionResetError):  # an RST, not a FIN, which would read as b""
        sock.recv(100)
    assert wait_until(lambda: len(direct.client_list()) == before)  # the server side is gone too
    assert proxy.stats().reset == 2 and proxy.stats().open == 0
    proxy.heal()
    assert client(proxy.port).ping()  # the proxy itself keeps serving


def test_refuse_rejects_new_connections_but_keeps_existing(
    proxy: FaultProxy, client: Callable[..., redis.Redis]
) -> None:
    old = client(proxy.port)
    assert old.ping()
    port = proxy.port
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(redis.ConnectionError):
        client(port).ping()
    assert old.ping()
    proxy.refuse(False)
    assert proxy.port == port
    assert client(port).ping()


def test_latency_delays_each_round_trip(proxy: FaultProxy, client: Callable[..., redis.Redis]) -> None:
    c = client(proxy.port, timeout=2.0)
    base = statistics.median(round_trip(c) for _ in range(5))
    proxy.set_latency(40)
    delayed = [round_trip(c) for _ in range(5)]
    assert min(delayed) >= 0.080  # 40 ms each way
    assert statistics.median(delayed) < base + 0.080 + 0.100
    proxy.heal()
    assert statistics.median(round_trip(c) for _ in range(5)) < 0.040


def test_latency_is_a_queue_per_direction_not_a_stall(
    proxy: FaultProxy, raw: Callable[[int], socket.socket]
) -> None:
    """Ten requests 10 ms apart under 100 ms latency take ~0.3 s, in order; a proxy that slept in its
    reader would need at least a second."""
    sock = raw(proxy.port)
    proxy.set_latency(100)
    t0 = time.monotonic()
    for i in range(10):
        sock.sendall(f"ECHO {i}\r\n".encode())
        time.sleep(0.01)
    expected = b"".join(f"${len(str(i))}\r\n{i}\r\n".encode() for i in range(10))
    got = b""
    while len(got) < len(expected):
        chunk = sock.recv(4096)
        assert chunk
        got += chunk
    elapsed = time.monotonic() - t0
    assert got == expected
    assert 0.2 <= elapsed < 0.6


def test_etcd_grpc_works_through_proxy_and_times_out_under_blackhole(etcd_server: EtcdServer) -> None:
    import etcd3

    with FaultProxy(etcd_server.host, etcd_server.port, name="etcd") as p:
        c = etcd3.client("127.0.0.1", p.port, timeout=1)
        try:
            c.put("proxied", "yes")
            assert c.get("proxied")[0] == b"yes"
            p.blackhole()
            t0 = time.monotonic()
            with pytest.raises(etcd3.exceptions.ConnectionTimeoutError):
                c.get("proxied")
            assert 0.9 < time.monotonic() - t0 < 2.5
        finally:
            c.close()
        p.heal()
        # python3-etcd3 shuns an endpoint for 300 s after one failure, hence a new client
        fresh = etcd3.client("127.0.0.1", p.port, timeout=1)
        try:
            assert fresh.get("proxied")[0] == b"yes"
        finally:
            fresh.close()


def socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


def test_stop_closes_every_socket_and_thread(redis_server: RedisServer) -> None:
    me = psutil.Process()
    sockets_before = socket_inodes()
    listening_before = {c.laddr for c in me.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    p = FaultProxy(redis_server.host, redis_server.port, name="stopper").start()
    port = p.port
    live = socket.create_connection(("127.0.0.1", port), timeout=2)
    idle = socket.create_connection(("127.0.0.1", port), timeout=2)
    live.sendall(PING)
    assert live.recv(100) == PONG
    p.set_latency(50)
    live.sendall(PING)  # in flight inside the proxy when it stops
    p.stop()
    for sock in (live, idle):
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
        sock.close()
    assert not any(t.name == "fault-proxy-stopper" for t in threading.enumerate())
    assert wait_until(lambda: socket_inodes() <= sockets_before), socket_inodes() - sockets_before
    assert not [c for c in me.net_connections("inet") if port in (c.laddr[1], c.raddr[1] if c.raddr else 0)]
    listening_after = {c.laddr for c in me.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert listening_after == listening_before
    p.stop()  # idempotent
    with pytest.raises(InfrastructureError):
        p.blackhole()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_listens_only_on_loopback(proxy: FaultProxy) -> None:
    listening = [
        c for c in psutil.Process().net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr[1] == proxy.port
    ]
    assert [c.laddr[0] for c in listening] == ["127.0.0.1"]
    assert proxy.address == ("127.0.0.1", proxy.port)
    outside = [
        a.address for addrs in psutil.net_if_addrs().values() for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    for address in outside:
        with pytest.raises(OSError):
            socket.create_connection((address, proxy.port), timeout=1).close()


def test_non_loopback_upstream_refused() -> None:
    for make in (FaultProxy, ProxyPool):
        with pytest.raises(ConfigurationError, match="allow_non_loopback"):
            make("10.255.0.1", 6379)
    FaultProxy("10.255.0.1", 6379, allow_non_loopback=True)  # opt-in: constructs (nothing dialled)
    FaultProxy("localhost", 6379)
    FaultProxy("::1", 6379)
    for port in (0, 65536, True):
        with pytest.raises(ConfigurationError):
            FaultProxy("127.0.0.1", port)


def test_upstream_down_resets_the_client(client: Callable[..., redis.Redis]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with FaultProxy("127.0.0.1", dead_port) as p:
        with pytest.raises(redis.ConnectionError):
            client(p.port).ping()
        assert wait_until(lambda: p.stats().reset == 1 and p.stats().open == 0)


def test_set_latency_rejects_nonsense(proxy: FaultProxy) -> None:
    for bad in (-1, math.nan, math.inf, True, "5"):
        with pytest.raises(ConfigurationError):
            proxy.set_latency(bad)  # type: ignore[arg-type]


def test_pool_faults_one_client_without_touching_the_others(
    redis_server: RedisServer, client: Callable[..., redis.Redis]
) -> None:
    with ProxyPool(redis_server.host, redis_server.port) as pool:
        a, b = pool.proxy_for("a"), pool.proxy_for("b")
        assert pool.proxy_for("a") is a and a.port != b.port
        assert pool.url_for("b", redis_server.url) == f"redis://127.0.0.1:{b.port}/0"
        ca, cb = client(a.port), client(b.port)
        a.blackhole()
        with pytest.raises(redis.TimeoutError):
            ca.ping()
        assert cb.ping()
        heal_all(pool)
        assert ca.ping()
    assert pool.proxies() == {}
    with pytest.raises(InfrastructureError):
        a.blackhole()


def test_blackhole_replies_lets_requests_through_but_drops_answers() -> None:
    with RedisServer() as server, FaultProxy(server.host, server.port).start() as proxy:
        client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
        client.ping()
        proxy.blackhole_replies()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.set("k", "applied")
        direct = redis.Redis(host=server.host, port=server.port, socket_timeout=1)
        assert direct.get("k") == b"applied"  # the request reached the server


def test_delay_replies_slows_only_the_answer() -> None:
    import time

    with RedisServer() as server, FaultProxy(server.host, server.port).start() as proxy:
        client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
        client.ping()
        proxy.delay_replies(300)
        direct = redis.Redis(host=server.host, port=server.port, socket_timeout=1)
        start = time.monotonic()
        client.set("k", "v")
        took = time.monotonic() - start
        assert took >= 0.29
        assert direct.get("k") == b"v"


# --- the kernel path: healthy connections are spliced, faults switch them back to the Python path

FAULT_CALL_BOUND_S = 1.0  # a fault call takes every connection back from the relay thread first


def spliced_ping(proxy: FaultProxy, sock: socket.socket, expect_spliced: int = 1) -> None:
    """A round trip, then wait until the connection(s) are on the kernel path."""
    sock.sendall(PING)
    assert sock.recv(100) == PONG
    assert wait_until(lambda: proxy.stats().spliced == expect_spliced), proxy.stats()


def timed(fn: Callable[[], None]) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def test_healthy_connections_are_relayed_by_the_kernel_and_python_path_stays_available(
    redis_server: RedisServer, raw: Callable[[int], socket.socket]
) -> None:
    assert SPLICE_AVAILABLE, "this platform lacks os.splice/os.eventfd: every byte takes the Python path"
    with FaultProxy(redis_server.host, redis_server.port, name="k") as kernel:
        spliced_ping(kernel, raw(kernel.port))
        # a relay thread counts a chunk just after it has passed it on, so the count may lag a moment
        assert wait_until(lambda: (kernel.stats().bytes_up, kernel.stats().bytes_down) == (len(PING), len(PONG)))
    with FaultProxy(redis_server.host, redis_server.port, name="py", splice=False) as python:
        sock = raw(python.port)
        sock.sendall(PING)
        assert sock.recv(100) == PONG
        time.sleep(0.05)
        assert python.stats().spliced == 0


def test_blackhole_on_a_spliced_connection_is_in_effect_when_the_call_returns_both_ways(
    proxy: FaultProxy, redis_server: RedisServer, raw: Callable[[int], socket.socket],
    client: Callable[..., redis.Redis],
) -> None:
    sock = raw(proxy.port)
    spliced_ping(proxy, sock)
    assert timed(proxy.blackhole) < FAULT_CALL_BOUND_S
    assert proxy.stats().spliced == 0
    sock.sendall(b"SET up-dropped 1\r\n")  # up: never reaches the server
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(100)
    assert client(redis_server.port).get("up-dropped") is None
    proxy.heal()
    sock.settimeout(2)
    spliced_ping(proxy, sock)  # back on the kernel path

    assert timed(proxy.blackhole_replies) < FAULT_CALL_BOUND_S  # down only
    assert proxy.stats().spliced == 0
    sock.sendall(b"SET down-dropped 1\r\n")
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):  # the reply vanished...
        sock.recv(100)
    assert wait_until(lambda: client(redis_server.port).get("down-dropped") == b"1")  # ...the request did not
    assert wait_until(lambda: proxy.stats().bytes_dropped >= len(b"+OK\r\n")), proxy.stats()


def test_latency_on_a_spliced_connection_delays_the_next_bytes_each_way(
    proxy: FaultProxy, raw: Callable[[int], socket.socket]
) -> None:
    sock = raw(proxy.port)
    spliced_ping(proxy, sock)

    def round_trip_s() -> float:
        t0 = time.monotonic()
        sock.sendall(PING)
        assert sock.recv(100) == PONG
        return time.monotonic() - t0

    assert timed(lambda: proxy.set_latency(100)) < FAULT_CALL_BOUND_S
    assert round_trip_s() >= 0.2  # 100 ms each way
    proxy.heal()
    spliced_ping(proxy, sock)
    assert timed(lambda: proxy.delay_replies(150)) < FAULT_CALL_BOUND_S
    assert round_trip_s() >= 0.15
    proxy.heal()
    spliced_ping(proxy, sock)
    assert statistics.median(round_trip_s() for _ in range(5)) < 0.1


def test_reset_and_close_on_spliced_connections(
    proxy: FaultProxy, raw: Callable[[int], socket.socket]
) -> None:
    a, b = raw(proxy.port), raw(proxy.port)
    spliced_ping(proxy, a, expect_spliced=2)  # a connection is spliced once connected, idle or not
    spliced_ping(proxy, b, expect_spliced=2)
    b.close()  # a FIN through the kernel path closes the server side, and the proxy forgets it
    assert wait_until(lambda: proxy.stats().open == 1 and proxy.stats().spliced == 1), proxy.stats()
    assert timed(proxy.reset) < FAULT_CALL_BOUND_S
    with pytest.raises(ConnectionResetError):
        a.recv(100)
    stats = proxy.stats()
    assert (stats.open, stats.reset, stats.spliced) == (0, 1, 0)


def test_many_spliced_connections_switch_to_a_fault_within_a_bound(
    proxy: FaultProxy, raw: Callable[[int], socket.socket]
) -> None:
    socks = [raw(proxy.port) for _ in range(32)]
    for sock in socks:
        spliced_ping(proxy, sock, expect_spliced=32)
    assert timed(proxy.blackhole) < FAULT_CALL_BOUND_S
    for sock in socks:
        sock.sendall(PING)
    assert wait_until(lambda: proxy.stats().bytes_dropped == 32 * len(PING)), proxy.stats()
    for sock in socks:
        sock.settimeout(0.01)
        with pytest.raises(TimeoutError):
            sock.recv(100)
    proxy.heal()
    assert wait_until(lambda: proxy.stats().spliced == 32)


def test_bytes_in_flight_on_the_kernel_path_survive_switching_paths(
    proxy: FaultProxy, client: Callable[..., redis.Redis]
) -> None:
    """Bytes the relay holds in its pipes when a fault arrives are queued, not lost, and keep their
    order: a 6 MiB reply read slowly through a small receive buffer (so that the relay works against
    back-pressure) while the proxy flips from the kernel path to the Python path and back arrives
    intact."""
    big = os.urandom(6 << 20)
    assert client(proxy.port, timeout=10.0).set("flip", big)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", proxy.port))
        sock.sendall(b"GET flip\r\n")
        expected = b"$%d\r\n%s\r\n" % (len(big), big)
        got = bytearray()
        reads = flips = 0
        while len(got) < len(expected) and reads < 1_000_000:
            chunk = sock.recv(16384)
            assert chunk, "the proxy closed the connection"
            got += chunk
            reads += 1
            if proxy.stats().spliced:  # on the kernel path now: take it off mid-transfer
                proxy.set_latency(1)
                proxy.heal()
                flips += 1
    assert bytes(got) == expected and flips >= 5, flips
    assert proxy.stats().bytes_dropped == 0
