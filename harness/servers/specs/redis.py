"""Redis: a private ``redis-server`` with or without AOF persistence."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit, urlunsplit

from lockchaos.harness.servers.specs.base import ServerSpec


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


def redis_ready(host: str, port: int) -> bool:
    # redis-py is imported where it is used: `lockchaos check` and `report` load this registry and
    # must not pay a tenth of a second for a client they never open.
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: the caller's deadline loop is the retry, and a retrying client would overshoot it.
    client = redis.Redis(host=host, port=port, socket_timeout=0.25, socket_connect_timeout=0.25,
                         retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())  # a server still loading its AOF answers LOADING: not ready
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class RedisSpec(ServerSpec):
    """Without persistence a restart loses every lock, by design; ``redis-aof`` is the durable one."""

    persistence: bool = False

    kind = "redis"
    binary_name = "redis-server"
    debian_package = "redis-server"
    binary_env = "LOCKCHAOS_REDIS_SERVER"
    image_env = "LOCKCHAOS_REDIS_IMAGE"
    default_image = "redis:7"
    port_count = 1
    default_port = 6379
    takes_faketime = True  # measured: libfaketime reaches redis-server (servers/faketime.py)
    state_in_subdir = False
    key_separator = ":"
    soak_ttl_ms = 1000  # millisecond leases
    default_prefix = "lockchaos:"

    @property
    def durable(self) -> bool:
        return self.persistence

    def with_durability(self, durable: bool) -> Self:
        if durable == self.persistence:
            return self
        return dataclasses.replace(self, name="redis-aof" if durable else "redis", persistence=durable)

    def flags(self, host: str, ports: tuple[int, ...], data_dir: str) -> list[str]:
        return redis_flags(host, ports[0], data_dir, self.persistence)

    def ready(self, host: str, port: int) -> bool:
        return redis_ready(host, port)

    def url(self, host: str, ports: tuple[int, ...]) -> str:
        return f"redis://{host}:{ports[0]}/0"

    def purge(self, url: str, prefix: str) -> int:
        """SCAN for the prefix and UNLINK key by key: never a flush, never a key outside the prefix."""
        import redis

        parts = urlsplit(url)
        client = redis.Redis.from_url(urlunsplit(parts._replace(query="")), socket_timeout=5,
                                      socket_connect_timeout=5)
        try:
            removed = 0
            pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
            for key in client.scan_iter(match=pattern, count=500):
                removed += int(client.unlink(key))
            return removed
        finally:
            client.close()


REDIS = RedisSpec("redis")
REDIS_AOF = REDIS.with_durability(True)
"""AOF with fsync always: for an adapter whose users run Redis that way (``--server redis-aof``)."""


class RedisFacts:
    """What a Redis handle says about its server, read off its spec: process and container mode alike."""

    spec: RedisSpec

    @property
    def persistence(self) -> bool:
        return self.spec.persistence
