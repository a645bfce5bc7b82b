"""``--backend redlock``: pottery's ``Redlock`` given several independent masters, as Redlock is meant.

The calls are the single-master wrapper's (``pottery_redlock.PotteryRedlock``): the same acquire,
extend and release, and the same minimum TTL, now over every master; pottery itself counts the
quorum (more than half) and subtracts its elapsed time and clock drift from the validity. Only the
client set differs.

URL: ``redlock://h:p,h:p,h:p,h:p,h:p/db`` with the options of lockchaos's ``redis://`` URL
(``prefix``, ``timeout_ms``, ``durable``), applied to every master. Each master is parsed as the
``redis://`` URL it stands for, so the options have one parser.

Declared ``replication="async"``: a grant is written to each master independently and no master
copies another, so a master that restarts without persistence forgets the grants it held, as an
asynchronous replica that is promoted never had them. Once enough masters forgot that the rest are
no longer a quorum, a contender is granted while the holder is still within its validity
(Kleppmann, 2016): the declared hazard, known-unsafe, never a conformance failure.

Declared ``spurious_refusals``: contenders racing for a free key each take some masters and give up
when none reaches a quorum, and pottery counts a master that answers late as a "no"; such a refusal
of a free key is reported as the declared hazard (known-unsafe), not as a conformance violation.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import redis
import redis.exceptions as rex
from pottery import Redlock
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..base import BackendUnavailable, ConfigurationError
from ..redaction import redact_url
from ..redis import DEFAULT_TIMEOUT_MS, RedisConfig, parse_redis_url
from ..urlopts import split_url
from .pottery_redlock import MIN_TTL_MS, UNBOUNDED_EXTENSIONS, PotteryRedlock
from .redis_client import _durable, redis_capabilities
from .wrapper import LibraryLock

SCHEME = "redlock"
RESTART_MS = 1000
"""A non-persistent redis-server restarts within this on loopback (measured: well under 100 ms)."""


@dataclass(frozen=True, slots=True)
class RedlockConfig:
    """A parsed ``redlock://`` URL: one ``RedisConfig`` per master, options shared."""

    url: str
    masters: tuple[RedisConfig, ...]

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @property
    def quorum(self) -> int:
        return len(self.masters) // 2 + 1

    @property
    def prefix(self) -> str:
        return self.masters[0].prefix


def parse_redlock_url(url: str) -> RedlockConfig:
    """Parse and check a ``redlock://`` URL; any problem is one ConfigurationError line."""
    if not isinstance(url, str):
        raise ConfigurationError(f"redlock URL must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    parts = split_url(url, SCHEME)
    if parts.scheme != SCHEME:
        raise ConfigurationError(f"not a redlock URL: {shown!r} (expected redlock://h:p,h:p,h:p/db)")
    if "@" in parts.netloc:
        raise ConfigurationError(f"redlock URL {shown!r}: credentials are not supported (one per master?)")
    hosts = parts.netloc.split(",")
    if not hosts or any(not h for h in hosts):
        raise ConfigurationError(f"redlock URL {shown!r} names no master, or an empty one")
    if len(set(hosts)) != len(hosts):
        raise ConfigurationError(f"redlock URL {shown!r} names a master twice")
    tail = parts.path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    masters = tuple(parse_redis_url(f"redis://{h}{tail}") for h in hosts)
    return RedlockConfig(url, masters)


class PotteryRedlockQuorum(PotteryRedlock):
    """pottery's Redlock over every master of a ``redlock://`` URL."""

    name = "redlock"

    def __init__(self, url: str) -> None:
        LibraryLock.__init__(self)  # the master set replaces the single-master wrapper's one client
        self._config = parse_redlock_url(url)
        self._where = self._config.display_url
        self._clients = [_client(c) for c in self._config.masters]
        self._probes = [_client(c, retries=False) for c in self._config.masters]
        answering = [c for c, p in zip(self._clients, self._probes, strict=True) if _answers(p)]
        if len(answering) < self._config.quorum:
            self._close_client()
            raise BackendUnavailable(f"cannot reach redlock masters at {self._where}: {len(answering)} of "
                                     f"{len(self._clients)} answer, a quorum is {self._config.quorum}")
        durable = self._config.masters[0].durable
        if durable is None:
            durable = all(_durable(c) for c in answering)
        caps = redis_capabilities(durable, rounding="down", min_ttl_ms=MIN_TTL_MS,
                                  refuses_below_min=True)
        self.capabilities = dataclasses.replace(
            caps, replication="async",
            # Contenders split the masters so that none has a quorum, and a slow master counts as a
            # "no": a free key is refused (measured: 0 of 8 simultaneous acquires won).
            spurious_refusals=True,
            # A minority of masters lost or restarting costs a quorum nothing; a paused one costs the
            # call's timeout on that master, a restarted one its restart.
            failover_ms=self._config.masters[0].timeout_ms + RESTART_MS)

    def lock_name(self, key: str) -> str:
        return self._config.prefix + key

    def _new_lock(self, key: str, ttl_ms: int) -> Redlock:
        return Redlock(key=self.lock_name(key), masters=set(self._clients), auto_release_time=ttl_ms / 1000,
                       num_extensions=UNBOUNDED_EXTENSIONS)

    def _present(self, key: str) -> bool:
        """Held as Redlock defines it: the key on a quorum of masters; unknown when the masters that
        did not answer could tip it either way. Read by our own probes, one try each: redis-py's
        default retries would spend seconds on each dead master."""
        name = Redlock(key=self.lock_name(key), masters=set(self._clients)).key
        present = silent = 0
        for client in self._probes:
            try:
                present += bool(client.exists(name))
            except (rex.ConnectionError, rex.TimeoutError, OSError):
                silent += 1
        if present >= self._config.quorum:
            return True
        if present + silent < self._config.quorum:
            return False
        raise BackendUnavailable(f"{self._where}: {present} masters hold {key!r}, {silent} do not answer")

    def _close_client(self) -> None:
        for client in (*self._clients, *self._probes):
            with contextlib.suppress(Exception):
                client.close()


def _client(config: RedisConfig, *, retries: bool = True) -> redis.Redis:
    """A master's client as ``redis_client.connect`` makes it (redis-py's retries kept, as a team
    has them: they are part of what is judged); ``retries=False`` for the harness's own probes."""
    timeout_s = (config.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
    if retries:
        return redis.Redis(host=config.host, port=config.port, db=config.db, username=config.username,
                           password=config.password, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return redis.Redis(host=config.host, port=config.port, db=config.db, username=config.username,
                       password=config.password, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                       retry=Retry(NoBackoff(), 0))


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (rex.ConnectionError, rex.TimeoutError, OSError):
        return False


def open_pottery_quorum(url: str) -> PotteryRedlockQuorum:
    return PotteryRedlockQuorum(url)
