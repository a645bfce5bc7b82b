"""What each lock server is told and how it is asked whether it is ready, whoever runs it.

Process mode and container mode must launch the very same Redis and etcd, or their verdicts would
not compare: the flags, the readiness checks and the port picking live here, once.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import urllib.request

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

LOOPBACK = "127.0.0.1"

# urllib would send even loopback requests through an http_proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PortTaken(Exception):
    """Another process bound the port between our pick and the server's bind."""


def free_ports(count: int) -> tuple[int, ...]:
    """Distinct ports the kernel calls free now; a race with another process is retried by start()."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return tuple(int(sock.getsockname()[1]) for sock in socks)


def redis_flags(host: str, port: int, data_dir: str, persistence: bool) -> list[str]:
    """No config file, so no system default leaks in; the log goes to stdout. RDB snapshots are off in
    both modes: AOF with fsync always is the durability under test, and a fork mid-soak is noise."""
    args = [
        "--port", str(port), "--bind", host, "--protected-mode", "yes",
        "--daemonize", "no", "--dir", data_dir, "--logfile", "", "--save", "",
    ]
    if persistence:
        return [*args, "--appendonly", "yes", "--appendfsync", "always"]
    return [*args, "--appendonly", "no"]


def etcd_flags(host: str, port: int, peer_port: int, data_dir: str, fast: bool) -> list[str]:
    """A single member on loopback; ``fast`` timing (10 ms heartbeat, 100 ms election) starts in ~0.1 s
    and lowers the minimum lease TTL from 2 s to 1 s."""
    client = f"http://{host}:{port}"
    peer = f"http://{host}:{peer_port}"
    args = [
        "--name", "default", "--data-dir", data_dir,
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"default={peer}",
    ]
    if fast:
        return [*args, "--heartbeat-interval", "10", "--election-timeout", "100"]
    return args


def etcd_election_timeout_ms(fast: bool) -> int:
    return 100 if fast else 1000


def etcd_min_lease_ttl_ms(election_timeout_ms: int) -> int:
    """etcd raises a lease to 1.5 election timeouts, rounded up to whole seconds."""
    return math.ceil(election_timeout_ms * 1.5 / 1000) * 1000


def redis_ready(host: str, port: int) -> bool:
    # No retries: the caller's deadline loop is the retry, and a retrying client would overshoot it.
    client = redis.Redis(host=host, port=port, socket_timeout=0.25, socket_connect_timeout=0.25,
                         retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())  # a server still loading its AOF answers LOADING: not ready
    except redis.RedisError:
        return False
    finally:
        client.close()


def etcd_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            pass  # gRPC and HTTP share the client port in etcd 3.4
        with _HTTP.open(f"http://{host}:{port}/health", timeout=0.5) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):  # refused, 503 before a leader exists, a half-written reply
        return False
