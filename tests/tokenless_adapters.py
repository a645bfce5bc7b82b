"""Tokenless locks, as most Python lock libraries are: no fencing token, owner-only ``holder()``.

``fake_tokenless`` is the reference fake showing what such a library shows (``fake://NAME?tokens=none``),
so the whole catalogue runs in virtual time. ``redis_tokenless`` is the smallest honest library-style
lock on real Redis, written only from the README: ``SET key owner NX PX ttl`` to acquire, a
compare-and-pexpire and a compare-and-delete script to renew and release, every redis error whose
outcome is unknown mapped to ``BackendUnavailable``. Both must pass the contract and every soak
scenario (pass or known-unsafe only): lockchaos must not call a correct tokenless lock broken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendUnavailable, Capabilities, Lease, LockBackend, validate_call
from lockchaos.backends.fake import PROFILES, FakeClient, fake_server

T = TypeVar("T")

RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fake_tokenless(url: str) -> LockBackend:
    """The reference fake as a tokenless, owner-only lock (``fake://NAME?tokens=none&holder=owner``)."""
    sep = "&" if "?" in url else "?"
    return open_backend(f"{url}{sep}tokens=none&holder=owner")


def fake_presence_only(url: str) -> LockBackend:
    """The reference fake as a tokenless lock whose ``holder()`` tells only that the key is taken."""
    sep = "&" if "?" in url else "?"
    return open_backend(f"{url}{sep}tokens=none&holder=presence")


class RedisTokenlessLock:
    """A library-style Redis lock: the owner string is the only identity, nothing else is stored."""

    name = "redis-tokenless"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.timeout_ms = int(options.get("timeout_ms", "1000"))
        timeout_s = self.timeout_ms / 1000
        self._client = redis.Redis.from_url(
            urlunsplit(parts._replace(query="")), socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0), retry_on_error=[], decode_responses=True, protocol=2)
        self._renew = self._client.register_script(RENEW_LUA)
        self._release = self._client.register_script(RELEASE_LUA)
        config = self._call(lambda: self._client.config_get("append*"))
        durable = isinstance(config, dict) and config.get("appendonly") == "yes" \
            and config.get("appendfsync") == "always"
        self.capabilities = Capabilities(expiry_lag_ms=2, durable=durable, fencing_tokens=False,
                                         holder_info="owner")

    @staticmethod
    def _key(key: str) -> str:
        return f"lockchaos-tokenless:{key}"

    @staticmethod
    def _call(call: Callable[[], T]) -> T:
        try:
            return call()
        except (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError) as exc:
            raise BackendUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        except rex.ResponseError as exc:  # MISCONF, a script killed mid-way: the outcome is unknown
            raise BackendUnavailable(f"redis: {exc}") from None

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        ok = self._call(lambda: self._client.set(self._key(key), owner, nx=True, px=ttl_ms))
        return Lease(key, owner, None, ttl_ms) if ok else None

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        done = self._call(lambda: self._renew(keys=[self._key(key)], args=[owner, ttl_ms]))
        return Lease(key, owner, None, ttl_ms) if done == 1 else None

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        return bool(self._call(lambda: self._release(keys=[self._key(key)], args=[owner])) == 1)

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        owner = self._call(lambda: self._client.get(self._key(key)))
        return None if owner is None else Lease(key, str(owner), None, 0)

    def close(self) -> None:
        self._client.close()


def redis_tokenless(url: str) -> RedisTokenlessLock:
    return RedisTokenlessLock(url)


def _own_server(url: str, profile: str, extra: str = "") -> LockBackend:
    """A fake server of its own next to the one the harness made (which has other capabilities)."""
    parts = urlsplit(url)
    name = f"{parts.netloc}{parts.path}-{profile}"
    return open_backend(f"fake://{name}?profile={profile}{extra}")


def fake_truncating(url: str) -> LockBackend:
    """A library-style lock that truncates TTLs to whole seconds and refuses sub-second ones."""
    return _own_server(url, "truncating", "&tokens=none&holder=owner")


def fake_no_holder(url: str) -> LockBackend:
    """A tokenless lock whose ``holder()`` tells nothing at all."""
    return _own_server(url, "redis", "&tokens=none&holder=none")


class _SecretlyRoundsUp(FakeClient):
    """Declares truncation and reports the truncated TTL, but its server rounds up: leases outlive it."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = super().acquire(key, owner, ttl_ms)
        return None if lease is None else replace(lease, ttl_ms=TRUNCATING.applied_ttl(ttl_ms))


class _DoesNotRefuse(FakeClient):
    """Declares it refuses sub-minimum TTLs, but sends them to the server, which raises them."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        return self._call(lambda: self.server._do_acquire(key, owner, ttl_ms))


TRUNCATING = PROFILES["truncating"]


def _lying(url: str, cls: type[FakeClient], server_caps: Capabilities) -> FakeClient:
    parts = urlsplit(url)
    server = fake_server(f"{parts.netloc}{parts.path}-{cls.__name__}", capabilities=server_caps)
    client = cls(server)
    client.capabilities = TRUNCATING
    return client


def truncation_declared_but_rounds_up(url: str) -> FakeClient:
    return _lying(url, _SecretlyRoundsUp, Capabilities(ttl_granularity_ms=1000, min_ttl_ms=1000))


def refusal_declared_but_raised_to_minimum(url: str) -> FakeClient:
    return _lying(url, _DoesNotRefuse, Capabilities(ttl_granularity_ms=1000, min_ttl_ms=1000, ttl_rounding="down"))
