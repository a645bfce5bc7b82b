"""``--backend redis-py-lock``: redis-py's own ``redis.lock.Lock``, as teams use it.

- acquire: ``Lock(client, name, timeout=ttl_s).acquire(blocking=False)``: ``SET name token NX PX``
  with ``int(timeout * 1000)`` ms (float seconds in, so a few TTLs lose a millisecond: 1001 ms is
  granted as 1000, reported as granted).
- renew: ``extend(ttl_s, replace_ttl=True)``: its script checks the token and PEXPIREs to exactly the
  new TTL, which is what renew means (now + TTL). ``reacquire()`` would do the same but only with the
  TTL the object was made with, and plain ``extend`` *adds* to the remaining TTL. ``LockNotOwnedError``
  / ``LockError`` ("unlocked": this object holds no token) are ``None``.
- release: ``release()``; ``LockNotOwnedError`` / ``LockError`` are ``False``. redis-py forgets the
  token before sending the release, so a release whose reply was lost cannot be repeated.
- defaults kept: ``thread_local=True`` (the token lives in the acquiring thread) and redis-py's
  retries on connection errors.
"""

from __future__ import annotations

import redis.exceptions as rex
from redis.lock import Lock

from .redis_client import RedisLibraryLock, redis_capabilities

LIBRARY = "redis-py Lock"


class RedisPyLock(RedisLibraryLock[Lock]):
    name = "redis-py-lock"
    library = LIBRARY

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.capabilities = redis_capabilities(self._target.durable, rounding="down")

    def _new_lock(self, key: str, ttl_ms: int) -> Lock:
        return Lock(self._target.client, self.lock_name(key), timeout=ttl_ms / 1000)

    def _try_acquire(self, lock: Lock) -> bool:
        return bool(lock.acquire(blocking=False))

    def _extend(self, lock: Lock, ttl_ms: int) -> bool:
        try:
            lock.extend(ttl_ms / 1000, replace_ttl=True)
        except rex.LockError:  # LockNotOwnedError included
            return False
        return True

    def _release(self, lock: Lock) -> bool:
        try:
            lock.release()
        except rex.LockError:
            return False
        return True

    def _present(self, key: str) -> bool:
        return Lock(self._target.client, self.lock_name(key)).locked()

    def _granted_ttl(self, lock: Lock, ttl_ms: int) -> int:
        return int(ttl_ms / 1000 * 1000)  # what do_acquire / do_extend send



def open_redis_py_lock(url: str) -> RedisPyLock:
    return RedisPyLock(url)
