"""``--backend pottery``: pottery's ``Redlock`` with a single master, as teams use it.

- acquire: ``Redlock(key=name, masters={client}, auto_release_time=ttl_s).acquire(blocking=False)``:
  a fresh uuid is stored in the object, then ``SET redlock:name uuid NX PX int(ttl * 1000)`` on each
  master. The uuid is overwritten *before* the SET: a failed re-acquire on an object that holds
  leaves it with a uuid the server never saw, so it can no longer extend or release its own lease.
- renew: ``extend()``, which PEXPIREs by the object's ``auto_release_time`` (set to the new TTL
  first: a public attribute). ``ExtendUnlockedLock`` / ``TooManyExtensions`` are ``None``.
  ``num_extensions`` is unbounded here, as a team holding a lock for long sets it (default: 3).
- release: ``release()``; ``ReleaseUnlockedLock`` is ``False``.
- defaults kept: ``raise_on_redis_errors=False``, with which pottery logs a Redis error and answers
  as if the master had said no (acquire ``False``, extend/release "unlocked"): a call whose outcome is
  unknown is reported to the caller as a definite refusal.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from pottery import ExtendUnlockedLock, Redlock, ReleaseUnlockedLock, TooManyExtensions

from .redis_client import connect, redis_capabilities, redis_errors
from .wrapper import LibraryLock

LIBRARY = "pottery Redlock"

# pottery logs every swallowed RedisError with a traceback and adds no handler (see python_redis_lock).
logging.getLogger("pottery").addHandler(logging.NullHandler())
UNBOUNDED_EXTENSIONS = sys.maxsize


class PotteryRedlock(LibraryLock[Redlock]):
    name = "pottery"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._target = connect(url)
        self._where = self._target.config.display_url
        self.capabilities = redis_capabilities(self._target.durable, rounding="down")

    def lock_name(self, key: str) -> str:
        return self._target.config.prefix + key

    def _new_lock(self, key: str, ttl_ms: int) -> Redlock:
        return Redlock(key=self.lock_name(key), masters={self._target.client}, auto_release_time=ttl_ms / 1000,
                       num_extensions=UNBOUNDED_EXTENSIONS)

    def _try_acquire(self, lock: Redlock) -> bool:
        return bool(lock.acquire(blocking=False))

    def _extend(self, lock: Redlock, ttl_ms: int) -> bool:
        lock.auto_release_time = ttl_ms / 1000
        try:
            lock.extend()
        except (ExtendUnlockedLock, TooManyExtensions):
            return False
        return True

    def _release(self, lock: Redlock) -> bool:
        try:
            lock.release()
        except ReleaseUnlockedLock:
            return False
        return True

    def _present(self, key: str) -> bool:
        # Redlock.locked() only knows this object's own uuid; presence is the key itself.
        probe = Redlock(key=self.lock_name(key), masters={self._target.client})
        return bool(self._target.client.exists(probe.key))

    def _errors(self, op: str, key: str) -> contextlib.AbstractContextManager[None]:
        return redis_errors(LIBRARY, op, key, self._where)

    def _granted_ttl(self, lock: Redlock, ttl_ms: int) -> int:
        return int(ttl_ms / 1000 * 1000)  # int(auto_release_time * 1000), as pottery sends it

    def _close_client(self) -> None:
        self._target.client.close()


def open_pottery_redlock(url: str) -> PotteryRedlock:
    return PotteryRedlock(url)
