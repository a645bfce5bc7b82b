"""Redis lock adapters broken the way real ones get broken, on a real ``redis-server``.

Each subclasses the real ``RedisLock`` and changes one thing; the contract suite run through
``lockchaos contract --adapter tests.broken_redis_adapters:NAME --server redis`` must fail it.
Factories take the URL the harness provisions and return a connected client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lockchaos.backends.base import Lease, validate_call
from lockchaos.backends.redis import RedisLock, parse_redis_url


class ReleaseWithoutOwnerCheck(RedisLock):
    """DEL without comparing the owner: anyone frees anyone's lock."""

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        deleted: int = self._call("release", key, lambda: self.client.delete(self.lock_key(key)))
        return deleted == 1


_RENEW_ANYONE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'token'))
"""


class RenewWithoutOwnerCheck(RedisLock):
    """PEXPIRE whenever the key exists, whoever asks."""

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        script = self.client.register_script(_RENEW_ANYONE)  # NOSCRIPT fallback loads it once
        token = self._call("renew", key, lambda: script(keys=[self.lock_key(key)], args=[owner, ttl_ms]))
        return None if token is None else Lease(key, owner, int(token), ttl_ms)


class CheckThenSetAcquire(RedisLock):
    """EXISTS (+INCR), then HSET + PEXPIRE: two round trips, so two clients can both see it free."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        lock_key = self.lock_key(key)

        def check() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(lock_key)
            pipe.incr(self.counter_key(key))
            replies: list[Any] = pipe.execute()
            return replies

        held, token = self._call("acquire", key, check)
        if held:
            return None

        def grant() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(lock_key, mapping={"owner": owner, "token": token, "ttl": ttl_ms})
            pipe.pexpire(lock_key, ttl_ms)
            replies: list[Any] = pipe.execute()
            return replies

        self._call("acquire", key, grant)
        return Lease(key, owner, int(token), ttl_ms)


_ACQUIRE_WITH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = %s
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'ttl', ARGV[2])
%s
return token
"""


class _ScriptedAcquire(RedisLock):
    """Acquire through a variant of the real script: ``token_expr`` and ``expire_stmt`` differ."""

    token_expr = "redis.call('INCR', KEYS[2])"
    expire_stmt = "redis.call('PEXPIRE', KEYS[1], ARGV[2])"

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        script = self.client.register_script(_ACQUIRE_WITH % (self.token_expr, self.expire_stmt))
        token = self._call("acquire", key, lambda: script(
            keys=[self.lock_key(key), self.counter_key(key)], args=[owner, ttl_ms]))
        return None if token is None else Lease(key, owner, int(token), ttl_ms)


class NonIncreasingToken(_ScriptedAcquire):
    """Every grant carries token 1: no fencing."""

    token_expr = "1"


class NoExpiry(_ScriptedAcquire):
    """Forgets the PEXPIRE: a crashed holder keeps the lock forever."""

    expire_stmt = ""


class SecondsExpiry(_ScriptedAcquire):
    """EXPIRE in whole seconds (rounded up) while reporting the millisecond TTL it was asked for."""

    expire_stmt = "redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000))"


def _connected(cls: type[RedisLock]) -> Callable[[str], RedisLock]:
    return lambda url: cls(parse_redis_url(url)).connect()


release_without_owner_check = _connected(ReleaseWithoutOwnerCheck)
renew_without_owner_check = _connected(RenewWithoutOwnerCheck)
check_then_set_acquire = _connected(CheckThenSetAcquire)
non_increasing_token = _connected(NonIncreasingToken)
no_expiry = _connected(NoExpiry)
seconds_expiry = _connected(SecondsExpiry)


def durable_without_aof(url: str) -> RedisLock:
    """The real adapter told ``durable=1`` on a server the harness runs without AOF."""
    sep = "&" if "?" in url else "?"
    return RedisLock(parse_redis_url(f"{url}{sep}durable=1")).connect()


def correct(url: str) -> RedisLock:
    """The real adapter, through the same --adapter path as the broken ones."""
    return RedisLock(parse_redis_url(url)).connect()


BROKEN: dict[str, Callable[[str], RedisLock]] = {
    "release_without_owner_check": release_without_owner_check,
    "renew_without_owner_check": renew_without_owner_check,
    "check_then_set_acquire": check_then_set_acquire,
    "non_increasing_token": non_increasing_token,
    "no_expiry": no_expiry,
    "seconds_expiry": seconds_expiry,
    "durable_without_aof": durable_without_aof,
}
