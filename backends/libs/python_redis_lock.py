"""``--backend python-redis-lock`` and ``python-redis-lock-autorenew``: ``redis_lock.Lock`` as teams use it.

- acquire: ``Lock(client, name, expire=ttl_s).acquire(blocking=False)``: ``SET lock:name id NX EX
  int(expire)``. The library truncates: 1.9 s is granted as 1 s, and a sub-second TTL becomes
  ``EX 0``, which Redis refuses (the error is left to surface). Re-acquiring with the object that
  holds raises ``AlreadyAcquired``: the library's "no", so ``None``.
- renew: ``extend(expire=ttl_s)``: ``EXPIRE lock:name int(expire)``; ``NotAcquired`` is ``None``.
  ``extend(0.5)`` sends ``EXPIRE key 0``, which deletes the key, and returns normally.
- release: ``release()``; ``NotAcquired`` is ``False``. It also pushes to ``lock-signal:name`` (for
  blocked waiters), a key that expires after ``signal_expire`` (1 s).
- autorenew: ``auto_renewal=True`` starts the library's own thread, which extends every
  ``expire * 2/3`` s until release. Closing the client stops those threads without releasing,
  as a process exit would.
"""

from __future__ import annotations

import logging

import redis_lock

from .redis_client import RedisLibraryLock, redis_capabilities

LIBRARY = "python-redis-lock"

# The library logs a WARNING per refused acquire and adds no handler, so Python's last-resort handler
# would print thousands of lines to a soak's stderr. A NullHandler ends that; handlers a user
# configures still receive every record (propagation is unchanged).
logging.getLogger("redis_lock").addHandler(logging.NullHandler())


class PythonRedisLock(RedisLibraryLock[redis_lock.Lock]):
    name = "python-redis-lock"
    library = LIBRARY

    def __init__(self, url: str, *, auto_renewal: bool = False) -> None:
        super().__init__(url)
        self.auto_renewal = auto_renewal
        if auto_renewal:
            self.name = "python-redis-lock-autorenew"
        # Whole seconds, truncated: int(expire). Below 1 s the library sends EX 0 (declared: not refused).
        self.capabilities = redis_capabilities(self._target.durable, granularity_ms=1000, rounding="down",
                                               min_ttl_ms=1000, renews_in_background=auto_renewal)

    def _new_lock(self, key: str, ttl_ms: int) -> redis_lock.Lock:
        return redis_lock.Lock(self._target.client, self.lock_name(key), expire=ttl_ms / 1000,
                               auto_renewal=self.auto_renewal)

    def _try_acquire(self, lock: redis_lock.Lock) -> bool:
        try:
            return bool(lock.acquire(blocking=False))
        except redis_lock.AlreadyAcquired:
            return False

    def _extend(self, lock: redis_lock.Lock, ttl_ms: int) -> bool:
        try:
            lock.extend(expire=ttl_ms / 1000)
        except redis_lock.NotAcquired:
            return False
        return True

    def _release(self, lock: redis_lock.Lock) -> bool:
        try:
            lock.release()
        except redis_lock.NotAcquired:
            return False
        return True

    def _present(self, key: str) -> bool:
        return bool(redis_lock.Lock(self._target.client, self.lock_name(key)).locked())

    def _granted_ttl(self, lock: redis_lock.Lock, ttl_ms: int) -> int:
        return int(ttl_ms / 1000) * 1000  # int(expire), as the library sends it

    def _forget(self, lock: redis_lock.Lock) -> None:
        # The renewal thread dies with its process; nothing is released.
        lock._stop_lock_renewer()



def open_python_redis_lock(url: str) -> PythonRedisLock:
    return PythonRedisLock(url)


def open_python_redis_lock_autorenew(url: str) -> PythonRedisLock:
    return PythonRedisLock(url, auto_renewal=True)
