"""``--backend sherlock``: sherlock's ``RedisLock``, as teams use it.

- acquire: ``RedisLock(name, client=client, expire=ttl_s).acquire(blocking=False)``: one script,
  ``SETNX`` then ``EXPIRE key expire``. ``expire`` is documented as a float, but ``EXPIRE`` takes
  whole seconds: a fractional TTL makes the EXPIRE fail *after* the SETNX, inside the script (Redis
  does not roll back), so the key is left held with no TTL and the caller gets the error. Whole-
  second TTLs are passed as ``int`` (as a team writes ``expire=2``), others as ``float``.
- renew: ``renew()``, which EXPIREs by the object's ``expire`` (set to the new TTL first: a public
  attribute); ``False`` is ``None``; ``LockException`` (this object never acquired) is ``None``.
- release: ``release()``; ``LockException`` ("not acquired by this instance") is ``False``.
- ``RedisLock.__del__`` releases a lock whose object is collected; handles this client drops (on
  close, or replaced by a newer one) are disarmed first, so a closed client leaves its lock to expire
  as a dead process does.
"""

from __future__ import annotations

from sherlock import LockException, RedisLock

from .redis_client import RedisLibraryLock, redis_capabilities

LIBRARY = "sherlock RedisLock"


def expire_seconds(ttl_ms: int) -> int | float:
    """``expire`` as a team writes it: ``2`` for 2000 ms, ``1.5`` for 1500 ms."""
    return ttl_ms // 1000 if ttl_ms % 1000 == 0 else ttl_ms / 1000


class SherlockLock(RedisLibraryLock[RedisLock]):
    name = "sherlock"
    library = LIBRARY

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # EXPIRE is whole seconds; fractional TTLs are not rounded but fail (see module doc).
        self.capabilities = redis_capabilities(self._target.durable, granularity_ms=1000, min_ttl_ms=1000)

    def _new_lock(self, key: str, ttl_ms: int) -> RedisLock:
        return RedisLock(self.lock_name(key), client=self._target.client, expire=expire_seconds(ttl_ms))

    def _try_acquire(self, lock: RedisLock) -> bool:
        return bool(lock.acquire(blocking=False))

    def _extend(self, lock: RedisLock, ttl_ms: int) -> bool:
        lock.expire = expire_seconds(ttl_ms)
        try:
            return bool(lock.renew())
        except LockException:
            return False

    def _release(self, lock: RedisLock) -> bool:
        try:
            lock.release()
        except LockException:
            return False
        return True

    def _present(self, key: str) -> bool:
        return bool(RedisLock(self.lock_name(key), client=self._target.client).locked())

    def _granted_ttl(self, lock: RedisLock, ttl_ms: int) -> int:
        return ttl_ms

    def _forget(self, lock: RedisLock) -> None:
        # RedisLock.__del__ releases a held lock when the object is collected; a dropped handle here
        # stands for a process that is gone (or a newer handle), whose lock must stay until its TTL.
        lock._owner = None



def open_sherlock_lock(url: str) -> SherlockLock:
    return SherlockLock(url)
