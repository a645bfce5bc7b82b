"""etcd: a private single member, always durable since its data dir survives a restart."""

from __future__ import annotations

import json
import math
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from lockchaos.harness.servers.specs.base import ServerSpec

# urllib would send even loopback requests through an http_proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def etcd_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            pass  # gRPC and HTTP share the client port in etcd 3.4
        with _HTTP.open(f"http://{host}:{port}/health", timeout=0.5) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):  # refused, 503 before a leader exists, a half-written reply
        return False


@dataclass(frozen=True, slots=True)
class EtcdSpec(ServerSpec):
    """``fast`` shortens heartbeat and election timeouts (10 ms / 100 ms) so that startup takes ~0.1 s
    instead of ~1 s. It also lowers etcd's minimum lease TTL (1.5 election timeouts, rounded up to
    whole seconds) from 2 s to 1 s, which adapters must declare as their minimum TTL."""

    fast: bool = True

    kind = "etcd"
    binary_name = "etcd"
    debian_package = "etcd-server"
    binary_env = "LOCKCHAOS_ETCD"
    image_env = "LOCKCHAOS_ETCD_IMAGE"
    default_image = "quay.io/coreos/etcd:v3.5.17"
    port_count = 2  # client, peer
    default_port = 2379
    takes_faketime = False  # Go reads the clock through the vDSO: libfaketime misses it (measured)
    state_in_subdir = True
    key_separator = "/"
    soak_ttl_ms = 2000  # whole-second leases that expire up to ~0.5 s late: a few seconds of TTL
    default_prefix = "lockchaos/"

    @property
    def durable(self) -> bool:
        return True

    def with_durability(self, durable: bool) -> Self:
        return self  # its data dir survives every restart: there is no switch to turn

    @property
    def election_timeout_ms(self) -> int:
        return etcd_election_timeout_ms(self.fast)

    @property
    def min_lease_ttl_ms(self) -> int:
        return etcd_min_lease_ttl_ms(self.election_timeout_ms)

    def flags(self, host: str, ports: tuple[int, ...], data_dir: str) -> list[str]:
        return etcd_flags(host, ports[0], ports[1], data_dir, self.fast)

    def ready(self, host: str, port: int) -> bool:
        return etcd_ready(host, port)

    def url(self, host: str, ports: tuple[int, ...]) -> str:
        return f"etcd://{host}:{ports[0]}"

    def env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        # etcd reads ETCD_* variables as flags: an inherited ETCD_LISTEN_METRICS_URLS could bind
        # 0.0.0.0, and an ETCD_INITIAL_CLUSTER would contradict ours.
        return {k: v for k, v in ServerSpec.env(self, environ).items() if not k.startswith("ETCD_")}

    def purge(self, url: str, prefix: str) -> int:
        """One range delete of the prefix, on the first endpoint."""
        import etcd3

        host, _, port = urlsplit(url).netloc.split(",")[0].rpartition(":")
        client = etcd3.client(host=host, port=int(port), timeout=5)
        try:
            deleted = client.delete_prefix(prefix)
            return int(getattr(deleted, "deleted", 0))
        finally:
            client.close()


ETCD = EtcdSpec("etcd")


class EtcdFacts:
    """What an etcd handle says about its server, read off its spec: process and container mode alike."""

    spec: EtcdSpec

    if TYPE_CHECKING:
        def _started_ports(self) -> tuple[int, ...]: ...

    @property
    def fast(self) -> bool:
        return self.spec.fast

    @property
    def election_timeout_ms(self) -> int:
        return self.spec.election_timeout_ms

    @property
    def peer_port(self) -> int:
        return self._started_ports()[1]

    @property
    def min_lease_ttl_ms(self) -> int:
        return self.spec.min_lease_ttl_ms
