"""Fault proxies hosted in processes of their own: the same faults, off the harness's GIL, and gone
with the harness. Real redis-server, real sockets, real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.harness.faults.proxy import ProxyPool
from lockchaos.harness.faults.proxyhost import HostedProxy, ProxyHost
from lockchaos.harness.servers.process import RedisServer

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[1]


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def hosts_of(pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(pid).children() if "lockchaos.harness.faults.proxyhost" in c.cmdline()]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def client(port: int, timeout: float = 0.3) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0))


def test_hosted_proxy_partitions_heals_and_counts_like_one_in_process(redis_server: RedisServer) -> None:
    with ProxyPool(redis_server.host, redis_server.port) as pool:
        proxy = pool.proxy_for("w0")
        assert isinstance(proxy, HostedProxy) and proxy.port != redis_server.port
        c = client(proxy.port)
        try:
            assert c.ping()
            assert wait_until(lambda: proxy.stats().bytes_down >= len(b"+PONG\r\n")), proxy.stats()
            proxy.blackhole()
            with pytest.raises(redis.TimeoutError):
                c.ping()
            proxy.heal()
            c.close()
            assert c.ping()
            assert proxy.stats().accepted == 2 and proxy.stats().bytes_dropped > 0
        finally:
            c.close()


def test_hosted_proxy_raises_the_in_process_error_types(redis_server: RedisServer) -> None:
    with ProxyHost("errors") as host:
        proxy = host.open(redis_server.host, redis_server.port, name="e", allow_non_loopback=False)
        with pytest.raises(ConfigurationError):
            proxy.set_latency(-1)
        with pytest.raises(ConfigurationError):
            host.open("127.0.0.1", 0, name="bad", allow_non_loopback=False)
        proxy.stop()
        with pytest.raises(InfrastructureError):
            proxy.heal()
    with pytest.raises(InfrastructureError):
        proxy.heal()  # the host is gone


def test_pool_fills_each_host_process_with_its_share_of_proxies(redis_server: RedisServer) -> None:
    with ProxyPool(redis_server.host, redis_server.port, per_host=2) as pool:
        for i in range(3):
            assert client(pool.proxy_for(f"w{i}").port).ping()
        hosts = hosts_of(os.getpid())
        assert len(hosts) == 2, hosts
    assert wait_until(lambda: not any(h.is_running() and h.status() != psutil.STATUS_ZOMBIE for h in hosts))


def test_pool_with_per_host_zero_keeps_its_proxies_in_process(redis_server: RedisServer) -> None:
    with ProxyPool(redis_server.host, redis_server.port, per_host=0) as pool:
        assert client(pool.proxy_for("w0").port).ping()
        assert hosts_of(os.getpid()) == []
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigurationError):
            ProxyPool(redis_server.host, redis_server.port, per_host=bad)  # type: ignore[arg-type]


SCRIPT = """
import sys, time
from lockchaos.harness.faults.proxy import ProxyPool
pool = ProxyPool("127.0.0.1", int(sys.argv[1]))
print(pool.proxy_for("w0").port, flush=True)
time.sleep(60)
"""


def test_hosts_die_with_a_sigkilled_harness(redis_server: RedisServer) -> None:
    harness = subprocess.Popen([sys.executable, "-c", SCRIPT, str(redis_server.port)], stdout=subprocess.PIPE,
                               text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert harness.stdout is not None
        port = int(harness.stdout.readline())
        assert client(port).ping()
        hosts = hosts_of(harness.pid)
        assert len(hosts) == 1
        harness.send_signal(signal.SIGKILL)
        harness.wait(10)
        assert wait_until(lambda: not any(h.is_running() and h.status() != psutil.STATUS_ZOMBIE for h in hosts))
        with pytest.raises(redis.ConnectionError):
            client(port).ping()
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
