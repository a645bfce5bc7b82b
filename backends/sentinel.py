"""Redis lease locks behind Sentinel: the Redis adapter's scripts, sent to whichever node is primary.

URL: ``redis+sentinel://host:port[,host:port...]/SERVICE[?prefix=...&timeout_ms=...]`` names the
Sentinels (not the data nodes) and the monitored service. redis-py's ``Sentinel`` asks them for the
primary on every new connection; a connection to a node that was demoted (it answers READONLY) is
dropped by redis-py, so the next call goes to the promoted replica. Keys, scripts, fencing counter
and failure semantics are those of ``backends/redis.py``: nothing is retried, and a call whose
connection died mid-way is indeterminate.

Declared: ``replication="async"``. A Redis primary acknowledges a grant before its replicas have
it, so a promotion can lose a granted lock (and the token counter's latest increments): that is the
hazard this backend declares, judged known-unsafe, never a failure. ``durable`` is read from the
primary as for plain Redis. ``failover_ms`` is Sentinel's default timing (30 s down-after, then the
vote and the promotion) plus one client timeout; the harness's own launcher declares its faster one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from .base import ConfigurationError
from .redis import DEFAULT_PREFIX, DEFAULT_TIMEOUT_MS, RedisConfig, RedisLock
from .urlopts import ms_option, prefix_option, url_options

DEFAULT_SENTINEL_PORT = 26379
DEFAULT_FAILOVER_MS = 30_000 + 5_000 + DEFAULT_TIMEOUT_MS
"""Sentinel's defaults: 30 s until a primary is judged down, a few seconds to vote and promote."""
_OPTIONS = ("prefix", "timeout_ms")


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """A parsed ``redis+sentinel://`` URL."""

    url: str
    sentinels: tuple[tuple[str, int], ...]
    service: str
    prefix: str
    timeout_ms: int


def parse_sentinel_url(url: str) -> SentinelConfig:
    """Parse and check a ``redis+sentinel://`` URL; any problem is one ConfigurationError line."""
    if not isinstance(url, str):
        raise ConfigurationError(f"sentinel URL must be a str, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        raise ConfigurationError(f"not a Sentinel URL: {url!r} (expected redis+sentinel://h:p,h:p/SERVICE)")
    if "@" in parts.netloc or parts.fragment:
        raise ConfigurationError(f"Sentinel URL {url!r}: credentials and #fragments are not supported")
    service = parts.path.strip("/")
    if not service or "/" in service:
        raise ConfigurationError(f"Sentinel URL {url!r} must name one service: redis+sentinel://h:p/SERVICE")
    sentinels = []
    for item in parts.netloc.split(","):
        try:
            split = urlsplit(f"//{item}")
            host, port = split.hostname, split.port
        except ValueError as exc:
            raise ConfigurationError(f"bad host:port {item!r} in Sentinel URL {url!r}: {exc}") from None
        if not host:
            raise ConfigurationError(f"Sentinel URL {url!r} has an endpoint without a host: {item!r}")
        sentinels.append((host, port or DEFAULT_SENTINEL_PORT))
    opts = url_options(parts.query, _OPTIONS, "redis+sentinel", url)
    return SentinelConfig(url, tuple(sentinels), service, prefix_option(opts, DEFAULT_PREFIX, url),
                          ms_option(opts, "timeout_ms", DEFAULT_TIMEOUT_MS, url))


class SentinelLock(RedisLock):
    """One client of a Sentinel-managed Redis: the primary is looked up per connection."""

    name = "redis-sentinel"

    def __init__(self, config: SentinelConfig) -> None:
        host, port = config.sentinels[0]
        super().__init__(RedisConfig(url=config.url, host=host, port=port, db=0, username=None, password=None,
                                     prefix=config.prefix, timeout_ms=config.timeout_ms, durable=None))
        self.sentinel_config = config
        timeout_s = config.timeout_ms / 1000
        self._client.close()  # the plain client the Redis adapter made; ours goes through Sentinel
        common: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        # redis-py's Sentinel is untyped: one annotated seam instead of ignores at every use.
        make_sentinel: Callable[..., Sentinel] = Sentinel
        self._sentinel = make_sentinel(list(config.sentinels), sentinel_kwargs=dict(common), **common)
        master_for: Callable[..., redis.Redis] = self._sentinel.master_for
        self._client = master_for(
            config.service, retry=Retry(NoBackoff(), 0), retry_on_error=[], decode_responses=True,
            protocol=2, **common,
        )
        self._command = self._client.execute_command

    def connect(self, budget_s: float = 2.0) -> Self:
        super().connect(budget_s)
        self.capabilities = dataclasses.replace(self.capabilities, replication="async",
                                                failover_ms=DEFAULT_FAILOVER_MS)
        return self

    def close(self) -> None:
        super().close()
        for s in self._sentinel.sentinels:
            s.close()

    def __repr__(self) -> str:
        return f"<SentinelLock {self.sentinel_config.url} prefix={self.prefix!r}>"


def open_sentinel(url: str) -> SentinelLock:
    """``redis+sentinel://h:p[,h:p...]/SERVICE``: a connected client of the service's current primary."""
    return SentinelLock(parse_sentinel_url(url)).connect()


__all__ = ["SentinelConfig", "SentinelLock", "open_sentinel", "parse_sentinel_url"]
