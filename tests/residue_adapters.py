"""Adapters that leave things behind on their server, each the way a real library does.

- ``never_expires``: SET NX without a TTL (what sherlock's SETNX-then-EXPIRE leaves when the EXPIRE
  fails): a holder that dies keeps the lock forever.
- ``writes_a_registry``: correct, but also counts acquisitions in a key of its own, outside the lock.
- ``leaks_leases``: our etcd lock, plus one lease granted and forgotten per acquire attempt (what
  python3-etcd3's ``Lock.acquire`` does on every failed attempt).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendUnavailable, Capabilities, Lease, LockBackend, validate_call

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class NeverExpires:
    name = "never-expires"
    capabilities = Capabilities(fencing_tokens=True)

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.client = redis.Redis.from_url(urlunsplit(parts._replace(query="")), socket_timeout=2)

    def _key(self, key: str) -> str:
        return f"nx:{key}"

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        try:
            if not self.client.set(self._key(key), owner, nx=True):  # no PX: the bug
                return None
            return Lease(key, owner, int(self.client.incr(f"nx-token:{key}")), ttl_ms)
        except redis.RedisError as exc:
            raise BackendUnavailable(str(exc)) from None

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        if self.client.get(self._key(key)) != owner.encode():
            return None
        return Lease(key, owner, int(self.client.get(f"nx-token:{key}") or 0), ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        return bool(self.client.eval(_RELEASE, 1, self._key(key), owner))

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        owner = self.client.get(self._key(key))
        if owner is None:
            return None
        return Lease(key, owner.decode(), int(self.client.get(f"nx-token:{key}") or 0), 0)

    def close(self) -> None:
        self.client.close()


def never_expires(url: str) -> LockBackend:
    return NeverExpires(url)


class _Delegating:
    def __init__(self, inner: LockBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self.inner.acquire(key, owner, ttl_ms)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self.inner.renew(key, owner, ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        return self.inner.release(key, owner)

    def holder(self, key: str) -> Lease | None:
        return self.inner.holder(key)

    def close(self) -> None:
        self.inner.close()


class WritesARegistry(_Delegating):
    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = self.inner.acquire(key, owner, ttl_ms)
        if lease is not None:
            client: Any = self.inner._client  # type: ignore[attr-defined]  # our RedisLock's connection
            client.incr("acquisitions-registry")
        return lease


def writes_a_registry(url: str) -> LockBackend:
    return WritesARegistry(open_backend(url))


class LeaksLeases(_Delegating):
    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        client: Any = self.inner._client  # type: ignore[attr-defined]  # our EtcdLock's connection
        client.lease(max(1, ttl_ms // 1000))  # granted, never used, never revoked
        return self.inner.acquire(key, owner, ttl_ms)


def leaks_leases(url: str) -> LockBackend:
    return LeaksLeases(open_backend(url))
