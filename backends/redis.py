"""Redis lease locks on redis-py: one Lua script per mutating call, fenced by a per-key counter.

URL: ``redis://[[user]:password@]host:port/db[?prefix=...&timeout_ms=...&durable=auto|0|1]``.

Layout under the prefix (default ``lockchaos:``), for lock key ``K`` (``{``, ``}`` and ``%`` in ``K``
percent-escaped, so the mapping is injective and the hash tag is always the whole escaped ``K``)::

    <prefix>{K}:lock   a hash {owner, token, ttl} with PEXPIRE = the applied TTL
    <prefix>{K}:token  the fencing counter: INCRed by every grant, never deleted or expired

Both keys carry the hash tag ``{K}``, so a Redis Cluster keeps them in one slot and the acquire
script may touch both. Nothing else is ever written.

Failure semantics: every call has a socket timeout (``timeout_ms``, default 1000). A timeout, a
dropped connection or a server that is loading / busy / read-only raises ``BackendTimeout`` or
``BackendUnavailable``: the call's outcome is unknown. acquire, renew and release are *never*
retried, neither here nor by redis-py (whose default since 6.0 is 10 retries with backoff, which
would silently re-send an acquire whose first copy may already have been applied). Only the
read-only ``holder`` retries, on a dropped connection, and opening a client retries its first
PING with backoff for a bounded time, then fails with one line naming the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Self, TypeVar
from urllib.parse import unquote

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from .base import (
    BackendTimeout,
    BackendUnavailable,
    Capabilities,
    Closing,
    ConfigurationError,
    Lease,
    LockChaosError,
    validate_call,
)
from .redaction import redact_url
from .urlopts import ms_option, prefix_option, split_url, url_options

T = TypeVar("T")

DEFAULT_PREFIX = "lockchaos:"
DEFAULT_TIMEOUT_MS = 1000
OPEN_BUDGET_S = 2.0
"""How long opening a client keeps retrying its first round trip before giving up."""
HOLDER_ATTEMPTS = 3
MAX_TTL_MS = 2**62
"""Redis adds the TTL to its clock in a signed 64-bit integer; larger TTLs cannot be applied."""

EXPIRY_LAG_MS = 2
"""Redis judges expiry at whole milliseconds of its own clock (a key is still visible during the
millisecond it expires in, and a lease starts at the millisecond the script began): measured lag
on loopback is at most ~1 ms, see bench/bench_redis_adapter.py. Declared with one ms to spare."""

# Error codes with which a server refuses a command *before* running it, for a while: the lock
# service is unavailable, not broken. Reported as BackendUnavailable (conservatively: indeterminate).
_TRANSIENT_CODES = frozenset(
    {"LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "OOM",
     "MOVED", "ASK"}
)

# --- the scripts: each is one atomic step at the server ------------------------------------------

ACQUIRE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""
"""KEYS: lock, counter. ARGV: owner, ttl_ms. Returns the new token, or nil if the key is held."""

RENEW_LUA = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return false
end
redis.call('HSET', KEYS[1], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'token'))
"""
"""KEYS: lock. ARGV: owner, ttl_ms. Returns the (unchanged) token, or nil if not held by owner."""

RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
"""KEYS: lock. ARGV: owner. Returns 1 if the owner held the key and it is now free, else 0."""



@dataclass(frozen=True, slots=True)
class _Lua:
    """A script and its SHA1, so that a call is one EVALSHA straight through ``execute_command``:
    redis-py's ``Script.__call__`` costs about as much again as the rest of the adapter."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> _Lua:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


_ACQUIRE, _RENEW, _RELEASE = _Lua.of(ACQUIRE_LUA), _Lua.of(RENEW_LUA), _Lua.of(RELEASE_LUA)

LOCK_FIELDS = ("owner", "token", "ttl")
"""``holder`` is one HMGET of these fields: a single command, so atomic without a script."""


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """A parsed ``redis://`` URL."""

    url: str
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    prefix: str
    timeout_ms: int
    durable: bool | None  # None: auto (ask the server)

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages."""
        return redact_url(self.url)


_OPTIONS = ("prefix", "timeout_ms", "durable")


def parse_redis_url(url: str) -> RedisConfig:
    """Parse and check a ``redis://`` URL; any problem is one ConfigurationError line."""
    if not isinstance(url, str):
        raise ConfigurationError(f"redis URL must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    parts = split_url(url, "redis")
    if parts.scheme != "redis":
        raise ConfigurationError(f"not a redis URL: {shown!r} (expected redis://host:port/db)")
    if parts.fragment:
        raise ConfigurationError(f"redis URL {shown!r} has a #fragment; options go in ?query")
    try:
        host = parts.hostname or "localhost"
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"bad host:port in redis URL {shown!r}: {exc}") from None
    if port == 0:
        raise ConfigurationError(f"redis URL {shown!r} has port 0")
    port = port or 6379
    db_text = parts.path.lstrip("/")
    if db_text == "":
        db = 0
    elif db_text.isdigit() and db_text.isascii():
        db = int(db_text)
    else:
        raise ConfigurationError(f"redis database must be a number >= 0, got {db_text!r} in {shown!r}")

    opts = url_options(parts.query, _OPTIONS, "redis", shown)
    prefix = prefix_option(opts, DEFAULT_PREFIX, shown)
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"prefix {prefix!r} must not contain '{{' or '}}' (they would change the keys' hash slot)"
        )
    timeout_ms = ms_option(opts, "timeout_ms", DEFAULT_TIMEOUT_MS, shown)

    durable: bool | None = None
    if "durable" in opts:
        choice = opts["durable"]
        if choice not in ("auto", "0", "1"):
            raise ConfigurationError(f"durable must be auto, 0 or 1, got {choice!r} in {shown!r}")
        durable = None if choice == "auto" else choice == "1"

    return RedisConfig(
        url=url, host=host, port=port, db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        prefix=prefix, timeout_ms=timeout_ms, durable=durable,
    )


def _escape(key: str) -> str:
    """Percent-escape the characters that would break the hash tag; injective on all keys."""
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


# --- the adapter ------------------------------------------------------------------------------------


class RedisLock(Closing):
    """One client of a Redis lock service: a redis-py connection pool, thread-safe.

    ``open_redis(url)`` is the usual way to make one; it connects (with a bounded retry) and reads
    the server's persistence settings before returning.
    """

    name = "redis"

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.prefix = config.prefix
        self.timeout_ms = config.timeout_ms
        timeout_s = config.timeout_ms / 1000
        # retry=Retry(NoBackoff(), 0): redis-py >= 6 otherwise retries every command up to 10 times
        # on ConnectionError/TimeoutError, re-sending writes whose first copy may have been applied.
        self._client = redis.Redis(
            host=config.host, port=config.port, db=config.db,
            username=config.username, password=config.password,
            socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0), retry_on_error=[],
            decode_responses=True, protocol=2,
            driver_info=None,  # no CLIENT SETINFO round trips on every new connection
        )
        self._command: Callable[..., Any] = self._client.execute_command
        self._closed = False
        self.capabilities = Capabilities.fenced_server(
            ttl_granularity_ms=1, min_ttl_ms=1, expiry_lag_ms=EXPIRY_LAG_MS, durable=bool(config.durable))

    # --- opening --------------------------------------------------------------------------------

    def connect(self, budget_s: float = OPEN_BUDGET_S) -> Self:
        """First round trip, retried with backoff for about ``budget_s``: PING, read persistence
        settings (for ``durable=auto``) and load the scripts, pipelined into one round trip."""
        where = self.config.display_url
        retrying = Retrying(
            stop=stop_before_delay(budget_s),
            wait=wait_exponential(multiplier=0.05, max=0.5) + wait_random(0, 0.05),
            retry=retry_if_exception(_worth_reconnecting),
            reraise=True,
        )
        start = time.monotonic()
        try:
            replies = retrying(self._handshake)
        except (rex.AuthenticationError, rex.AuthorizationError) as exc:
            self.close()
            raise ConfigurationError(f"redis at {where} refused our credentials: {exc}") from None
        except rex.ResponseError as exc:
            self.close()
            if _transient(exc):
                raise BackendUnavailable(f"redis at {where} stayed unavailable: {exc}") from None
            raise ConfigurationError(
                f"redis at {where} refused the adapter's setup (PING, CONFIG GET, SCRIPT LOAD): {exc}"
            ) from None
        except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
            self.close()
            attempts = retrying.statistics.get("attempt_number", 1)
            raise BackendUnavailable(
                f"cannot reach redis at {where}: {_describe(exc)} "
                f"({attempts} attempt(s) in {time.monotonic() - start:.1f} s)"
            ) from None
        except rex.RedisError as exc:
            self.close()
            raise BackendUnavailable(f"redis at {where} failed the first round trip: {exc}") from None
        if self.config.durable is None:
            self.capabilities = replace(self.capabilities, durable=_durable_config(replies[1]))
        return self

    def _handshake(self) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        pipe.ping()
        pipe.config_get("append*")
        for script in (_ACQUIRE, _RENEW, _RELEASE):
            pipe.script_load(script.source)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if isinstance(replies[0], Exception):
            raise replies[0]
        for reply in replies[2:]:
            if isinstance(reply, Exception):
                raise reply
        return replies

    # --- keys -----------------------------------------------------------------------------------

    def lock_key(self, key: str) -> str:
        return f"{self.prefix}{{{_escape(key)}}}:lock"

    def counter_key(self, key: str) -> str:
        return f"{self.prefix}{{{_escape(key)}}}:token"

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client, for tests and tooling: it bypasses the lock semantics."""
        return self._client

    # --- LockBackend ----------------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        _check_ttl_range(ttl_ms)
        tag = f"{self.prefix}{{{_escape(key)}}}"
        token = self._call("acquire", key, self._eval, _ACQUIRE, 2, f"{tag}:lock", f"{tag}:token", owner, ttl_ms)
        if token is None:
            return None
        return Lease(key=key, owner=owner, token=_as_int(token, "acquire token"), ttl_ms=ttl_ms)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        _check_ttl_range(ttl_ms)
        token = self._call("renew", key, self._eval, _RENEW, 1, self.lock_key(key), owner, ttl_ms)
        if token is None:
            return None
        return Lease(key=key, owner=owner, token=_as_int(token, "renew token"), ttl_ms=ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        freed = self._call("release", key, self._eval, _RELEASE, 1, self.lock_key(key), owner)
        return _as_int(freed, "release reply") == 1

    def _eval(self, lua: _Lua, numkeys: int, *keys_and_args: object) -> Any:
        """EVALSHA; on NOSCRIPT (a server restarted or flushed since connect) EVAL, which runs the
        script and caches it again. NOSCRIPT means nothing ran, so running it once more is safe."""
        try:
            return self._command("EVALSHA", lua.sha, numkeys, *keys_and_args)
        except rex.NoScriptError:
            return self._command("EVAL", lua.source, numkeys, *keys_and_args)

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        lock_key = self.lock_key(key)

        def read() -> list[Any]:
            fields: list[Any] = self._command("HMGET", lock_key, *LOCK_FIELDS)
            return fields

        try:
            fields = self._call("holder", key, read, translate_dropped=False)
        except rex.ConnectionError:
            # A read may be repeated: a dropped connection (or a server still loading) is retried
            # on a fresh one, with backoff, within about one timeout. Timeouts are not retried.
            retrying = Retrying(
                stop=stop_after_attempt(HOLDER_ATTEMPTS - 1) | stop_after_delay(self.timeout_ms / 1000),
                wait=wait_exponential(multiplier=0.01, max=0.2) + wait_random(0, 0.01),
                retry=retry_if_exception(lambda e: isinstance(e, rex.ConnectionError)),
                reraise=True,
            )
            fields = self._call("holder", key, lambda: retrying(read))
        owner, token, ttl = fields
        if owner is None and token is None and ttl is None:
            return None
        if owner is None or token is None or ttl is None:
            found = dict(zip(LOCK_FIELDS, fields, strict=True))
            raise LockChaosError(
                f"redis lock record {lock_key!r} is incomplete ({found}): something other than"
                " lockchaos writes under the prefix"
            )
        return Lease(key=key, owner=owner, token=_as_int(token, "token"), ttl_ms=_as_int(ttl, "ttl"))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._client.close()

    def __repr__(self) -> str:
        return f"<RedisLock {self.config.display_url} prefix={self.prefix!r}>"

    # --- error translation ----------------------------------------------------------------------

    def _call(
        self, op: str, key: str, call: Callable[..., T], *args: Any, translate_dropped: bool = True
    ) -> T:
        """Run ``call(*args)``, one request; every failure becomes a lockchaos error that says what
        is known. (Arguments rather than a closure: one allocation less per call.)"""
        if self._closed:
            raise LockChaosError(f"{self!r} is closed")
        try:
            return call(*args)
        except (rex.TimeoutError, TimeoutError) as exc:
            raise BackendTimeout(
                f"redis {op}({key!r}) at {self.config.display_url}: no reply within {self.timeout_ms} ms"
                " (outcome unknown)"
            ) from exc
        except rex.ConnectionError as exc:
            if not translate_dropped:
                raise
            raise BackendUnavailable(
                f"redis {op}({key!r}) at {self.config.display_url}: {_describe(exc)} (outcome unknown)"
            ) from exc
        except OSError as exc:
            raise BackendUnavailable(
                f"redis {op}({key!r}) at {self.config.display_url}: {_describe(exc)} (outcome unknown)"
            ) from exc
        except rex.ResponseError as exc:
            if _transient(exc):
                raise BackendUnavailable(
                    f"redis {op}({key!r}) at {self.config.display_url} refused: {exc}"
                    " (not applied; retry later)"
                ) from exc
            raise LockChaosError(
                f"redis {op}({key!r}) at {self.config.display_url} failed: {exc} "
                f"(is something else writing under the prefix {self.prefix!r}?)"
            ) from exc


def _transient(exc: rex.ResponseError) -> bool:
    """A refusal the server gives before running the command, for a while (loading, busy, ...)."""
    code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
    return code in _TRANSIENT_CODES or isinstance(exc, rex.OutOfMemoryError | rex.ReadOnlyError)


def _worth_reconnecting(exc: BaseException) -> bool:
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError):
        return False
    if isinstance(exc, rex.ResponseError):
        return _transient(exc)
    return isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _durable_config(reply: object) -> bool:
    """True only with ``appendonly yes`` and ``appendfsync always``; a refused CONFIG is False."""
    if not isinstance(reply, dict):
        return False
    return reply.get("appendonly") == "yes" and reply.get("appendfsync") == "always"


def _check_ttl_range(ttl_ms: int) -> None:
    if ttl_ms > MAX_TTL_MS:
        raise ValueError(f"ttl_ms must be <= {MAX_TTL_MS} for redis, got {ttl_ms}")


def _as_int(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    raise LockChaosError(f"redis returned {value!r} as the {what}, not an integer")


def open_redis(url: str) -> RedisLock:
    """``redis://host:port/db[?prefix=...&timeout_ms=...&durable=auto|0|1]``: a new, connected client.

    Raises ConfigurationError for a bad URL (nothing is contacted) and BackendUnavailable when the
    server cannot be reached within about two seconds.
    """
    return RedisLock(parse_redis_url(url)).connect()


__all__ = [
    "ACQUIRE_LUA",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_MS",
    "EXPIRY_LAG_MS",
    "LOCK_FIELDS",
    "RELEASE_LUA",
    "RENEW_LUA",
    "RedisConfig",
    "RedisLock",
    "open_redis",
    "parse_redis_url",
]
