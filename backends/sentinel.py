"""Redis lease locks behind Sentinel: the Redis adapter's scripts, sent to whichever node is primary.

URL: ``redis+sentinel://host:port[,host:port...]/SERVICE[?prefix=...&timeout_ms=...]`` names the
Sentinels (not the data nodes) and the monitored service. redis-py's ``Sentinel`` asks them for the
primary on every new connection; a connection to a node that was demoted (it answers READONLY) is
dropped by redis-py, so the next call goes to the promoted replica. Keys, scripts, fencing counter
and failure semantics are those of ``backends/redis.py``: nothing is retried, and a call whose
connection died mid-way is indeterminate.

``?wait_replicas=N&wait_timeout_ms=T`` (N >= 1; T defaults to half the client timeout): after every
granted acquire or renew the client sends ``WAIT N T`` on the same connection; fewer than N replicas
acknowledging within T is a failed grant, and the call raises ``BackendUnavailable`` (the caller must
not count on it). A short-acked *acquire* is released again (owner-checked, so a later holder is
never touched): a contender reading the primary meanwhile was refused, so a short ack costs
availability, never safety on the primary. A short-acked *renew* is not released: the holder's
previous lease was acknowledged and is still in force, and deleting the key would end it early
(measured: releasing there turned every replica re-sync after a failover into a lost lock); the
extension stays on the primary and is the unknown outcome the error reports.

What WAIT does *not* buy: it makes a grant wait for N replicas' acknowledgement, not for a majority's
agreement on who is primary. Redis stays asynchronously replicated: a replica that acknowledged can
still lose the write when Sentinel promotes another replica that had not (with N below the number
of replicas, Sentinel picks the replica with the highest offset, usually but not surely one that
acked), an old primary still applies a grant locally before WAIT reports the short ack, and a
failover in the middle of WAIT leaves the outcome unknown. So the variant still declares
``replication="async"``: a lost lock is the declared hazard (known-unsafe), never a failure.
Measured on the harness's clusters: README "Clusters".

Declared: ``replication="async"``. A Redis primary acknowledges a grant before its replicas have
it, so a promotion can lose a granted lock (and the token counter's latest increments): that is the
hazard this backend declares, judged known-unsafe, never a failure. ``durable`` is read from the
primary as for plain Redis. ``failover_ms`` is Sentinel's default timing (30 s down-after, then the
vote and the promotion) plus one client timeout; the harness's own launcher declares its faster one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from .base import BackendUnavailable, ConfigurationError, Lease, LockChaosError
from .redis import DEFAULT_PREFIX, DEFAULT_TIMEOUT_MS, RedisConfig, RedisLock
from .urlopts import ms_option, prefix_option, split_url, url_options

DEFAULT_SENTINEL_PORT = 26379
DEFAULT_FAILOVER_MS = 30_000 + 5_000 + DEFAULT_TIMEOUT_MS
"""Sentinel's defaults: 30 s until a primary is judged down, a few seconds to vote and promote."""
_OPTIONS = ("prefix", "timeout_ms", "wait_replicas", "wait_timeout_ms")
MAX_WAIT_REPLICAS = 64


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """A parsed ``redis+sentinel://`` URL."""

    url: str
    sentinels: tuple[tuple[str, int], ...]
    service: str
    prefix: str
    timeout_ms: int
    wait_replicas: int = 0
    """Replicas that must acknowledge a grant (``WAIT``) before it counts; 0: no WAIT (plain Sentinel)."""
    wait_timeout_ms: int = 0


def parse_sentinel_url(url: str) -> SentinelConfig:
    """Parse and check a ``redis+sentinel://`` URL; any problem is one ConfigurationError line."""
    if not isinstance(url, str):
        raise ConfigurationError(f"sentinel URL must be a str, got {type(url).__name__}")
    parts = split_url(url, "redis+sentinel")  # a malformed one (``[::1``) is one line too
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
    timeout_ms = ms_option(opts, "timeout_ms", DEFAULT_TIMEOUT_MS, url)
    wait_replicas = _wait_replicas(opts, url)
    if "wait_timeout_ms" in opts and not wait_replicas:
        raise ConfigurationError(f"Sentinel URL {url!r}: wait_timeout_ms needs wait_replicas=N (N >= 1)")
    wait_timeout_ms = ms_option(opts, "wait_timeout_ms", max(1, timeout_ms // 2), url) if wait_replicas else 0
    if wait_timeout_ms >= timeout_ms:
        raise ConfigurationError(f"Sentinel URL {url!r}: wait_timeout_ms ({wait_timeout_ms}) must be below "
                                 f"timeout_ms ({timeout_ms}), or every short ack would look like a dead server")
    return SentinelConfig(url, tuple(sentinels), service, prefix_option(opts, DEFAULT_PREFIX, url), timeout_ms,
                          wait_replicas, wait_timeout_ms)


def _wait_replicas(opts: dict[str, str], url: str) -> int:
    raw = opts.get("wait_replicas")
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_WAIT_REPLICAS:
        raise ConfigurationError(f"wait_replicas must be a whole number from 1 to {MAX_WAIT_REPLICAS}, "
                                 f"got {raw!r} in {url!r}")
    return int(raw)


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
        # No retries on the Sentinels either: an unreachable group is one clear error within seconds.
        asking = {**common, "retry": Retry(NoBackoff(), 0)}
        self._sentinel = make_sentinel(list(config.sentinels), sentinel_kwargs=asking, **common)
        master_for: Callable[..., redis.Redis] = self._sentinel.master_for
        self._client = master_for(
            config.service, retry=Retry(NoBackoff(), 0), retry_on_error=[], decode_responses=True,
            protocol=2, **common,
        )
        self._command = self._client.execute_command

    def _handshake(self) -> list[Any]:
        """The primary's address first, so that a group none of whose Sentinels answers (or names a
        primary) is one short line, not redis-py's list of every connection it tried."""
        discover: Callable[[str], tuple[str, int]] = self._sentinel.discover_master
        try:
            discover(self.sentinel_config.service)
        except MasterNotFoundError:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinel_config.sentinels)
            raise redis.ConnectionError(f"no Sentinel of {hosts} named a primary for "
                                        f"{self.sentinel_config.service!r}") from None
        return super()._handshake()

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self._acknowledged("acquire", key, owner, super().acquire(key, owner, ttl_ms))

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self._acknowledged("renew", key, owner, super().renew(key, owner, ttl_ms))

    def _acknowledged(self, op: str, key: str, owner: str, lease: Lease | None) -> Lease | None:
        """``lease`` once ``wait_replicas`` replicas have it; a short ack raises (an acquire's grant is
        released first; a renew's is not: its holder's previous, acknowledged lease stands)."""
        config = self.sentinel_config
        if lease is None or not config.wait_replicas:
            return lease
        # WAIT counts the writes of the connection it is sent on: a client is used by one thread at a
        # time and redis-py's pool hands back the connection just released, the one that carried the grant.
        acked = _as_count(self._call(op, key, self._command, "WAIT", config.wait_replicas, config.wait_timeout_ms))
        if acked >= config.wait_replicas:
            return lease
        what = "extension not counted (the previous lease stands)"
        if op == "acquire":
            what = "released again, not a grant (a replica may still hold it until its TTL)"
            with contextlib.suppress(LockChaosError):
                self.release(key, owner)
        raise BackendUnavailable(
            f"redis-sentinel {op}({key!r}) at {self.config.display_url}: granted by the primary but acknowledged "
            f"by {acked} of the {config.wait_replicas} replica(s) required within {config.wait_timeout_ms} ms: "
            f"{what}")

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


def _as_count(reply: object) -> int:
    if isinstance(reply, int) and not isinstance(reply, bool):
        return reply
    raise LockChaosError(f"WAIT replied {reply!r}, not a replica count")


def discover_primary(url: str, timeout_s: float) -> tuple[str, int]:
    """The (host, port) of the primary the Sentinels of ``url`` name now, asking each in turn: what the
    harness's own look-ups (key purge, residue) use, outside any client."""
    config = parse_sentinel_url(url)
    common: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
                              "retry": Retry(NoBackoff(), 0)}
    make_sentinel: Callable[..., Sentinel] = Sentinel
    sentinel = make_sentinel(list(config.sentinels), sentinel_kwargs=dict(common), **common)
    try:
        discover: Callable[[str], tuple[str, int]] = sentinel.discover_master
        host, port = discover(config.service)
        return str(host), int(port)
    finally:
        for s in sentinel.sentinels:
            s.close()


def sentinel_answers(url: str, timeout_s: float) -> bool:
    """Whether any Sentinel of ``url`` answers a PING within ``timeout_s``: a group mid-failover still
    answers (worth waiting for), one that is down or unreachable does not."""
    config = parse_sentinel_url(url)
    for host, port in config.sentinels:
        client = redis.Redis(host=host, port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                             retry=Retry(NoBackoff(), 0))
        try:
            if client.ping():
                return True
        except redis.RedisError:
            continue
        finally:
            client.close()
    return False


def open_sentinel(url: str) -> SentinelLock:
    """``redis+sentinel://h:p[,h:p...]/SERVICE``: a connected client of the service's current primary."""
    return SentinelLock(parse_sentinel_url(url)).connect()


__all__ = ["SentinelConfig", "SentinelLock", "discover_primary", "open_sentinel", "parse_sentinel_url",
           "sentinel_answers"]
