"""Loopback port picking shared by every mechanism, and the per-kind flags under their old names.

Process mode and container mode must launch the very same Redis and etcd, or their verdicts would
not compare: each kind's flags and readiness check live in its spec (``specs/``), once; this module
keeps the loopback address and the port picking, and re-exports the flag helpers for the clusters
and the probes that build member command lines of their own.
"""

from __future__ import annotations

import contextlib
import socket

from lockchaos.harness.servers.specs.etcd import (
    etcd_election_timeout_ms,
    etcd_flags,
    etcd_min_lease_ttl_ms,
    etcd_ready,
)
from lockchaos.harness.servers.specs.redis import redis_flags, redis_ready

LOOPBACK = "127.0.0.1"


class PortTaken(Exception):
    """Another process bound the port between our pick and the server's bind."""


def free_ports(count: int) -> tuple[int, ...]:
    """Distinct ports the kernel calls free now; a race with another process is retried by start()."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return tuple(int(sock.getsockname()[1]) for sock in socks)


__all__ = [
    "LOOPBACK",
    "PortTaken",
    "etcd_election_timeout_ms",
    "etcd_flags",
    "etcd_min_lease_ttl_ms",
    "etcd_ready",
    "free_ports",
    "redis_flags",
    "redis_ready",
]
