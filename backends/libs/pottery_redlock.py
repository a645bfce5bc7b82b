"""``--backend pottery``: pottery's ``Redlock`` with a single master, as teams use it.

- acquire: ``Redlock(key=name, masters={client}, auto_release_time=ttl_s).acquire(blocking=False)``:
  a fresh uuid is stored in the object, then ``SET redlock:name uuid NX PX int(ttl * 1000)`` on each
  master. The uuid is overwritten *before* the SET: a failed re-acquire on an object that holds
  leaves it with a uuid the server never saw, so it can no longer extend or release its own lease.
- renew: ``extend()``, which PEXPIREs by the object's ``auto_release_time`` (set to the new TTL
  first: a public attribute). ``ExtendUnlockedLock`` / ``TooManyExtensions`` are ``None``.
  ``num_extensions`` is unbounded here, as a team holding a lock for long sets it (default: 3).
- release: ``release()``; ``ReleaseUnlockedLock`` is ``False``.
- minimum TTL: pottery grants only while the Redlock validity ``ttl - (ttl * _CLOCK_DRIFT_FACTOR + 2 ms)
  - elapsed`` is positive, else it releases and answers ``False`` (a free key answered "no"). Below
  3 ms that is negative whatever the round trip; ``MIN_TTL_MS`` (23 ms) leaves 20 ms for the round trip.
  Declared ``refuses_below_min``: this adapter raises ValueError below it (acquire and renew alike)
  before calling pottery. Above it, a round trip slower than the validity still makes pottery refuse.
- defaults kept: ``raise_on_redis_errors=False``, with which pottery logs a Redis error and answers
  as if the master had said no (acquire ``False``, extend/release "unlocked"): a call whose outcome is
  unknown is reported to the caller as a definite refusal.
"""

from __future__ import annotations

import logging
import math
import sys

from pottery import ExtendUnlockedLock, Redlock, ReleaseUnlockedLock, TooManyExtensions

from ..base import Lease, validate_call
from .redis_client import RedisLibraryLock, redis_capabilities

LIBRARY = "pottery Redlock"

# pottery logs every swallowed RedisError with a traceback and adds no handler (see python_redis_lock).
logging.getLogger("pottery").addHandler(logging.NullHandler())
UNBOUNDED_EXTENSIONS = sys.maxsize
FIXED_DRIFT_MS = 2
"""The constant part of ``Redlock.__drift()``: ``auto_release_time * _CLOCK_DRIFT_FACTOR + .002``."""
ROUND_TRIP_BUDGET_MS = 20
"""Validity left for the SET's round trip at the minimum: a loaded machine (CI with parallel test
workers) took longer than 2 ms often enough that a 5 ms minimum was refused five times running."""
MIN_TTL_MS = math.ceil((FIXED_DRIFT_MS + ROUND_TRIP_BUDGET_MS) / (1 - Redlock._CLOCK_DRIFT_FACTOR))
"""23 ms. Below 3 ms pottery's validity is negative whatever the round trip (it never grants); at 3-4 ms
it grants only when the SET returns within 1-2 ms (never against a Redis with ``appendfsync always``:
measured 0 of 50 at 3 ms, 50 of 50 at 4 and 5 ms on an idle machine). The declared minimum leaves a
20 ms round trip, so that "granted at the minimum" holds on a busy machine too."""


def check_pottery_ttl(ttl_ms: int) -> None:
    """ValueError for a TTL pottery's validity rule can never grant (the declared refusal)."""
    if ttl_ms < MIN_TTL_MS:
        raise ValueError(f"pottery cannot grant ttl_ms={ttl_ms}: its Redlock validity (ttl minus "
                         f"{Redlock._CLOCK_DRIFT_FACTOR:g} * ttl + {FIXED_DRIFT_MS} ms) is not positive below "
                         f"{MIN_TTL_MS} ms")


class PotteryRedlock(RedisLibraryLock[Redlock]):
    name = "pottery"
    library = LIBRARY

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.capabilities = redis_capabilities(self._target.durable, rounding="down", min_ttl_ms=MIN_TTL_MS,
                                               refuses_below_min=True)

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        check_pottery_ttl(ttl_ms)
        return super().acquire(key, owner, ttl_ms)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        check_pottery_ttl(ttl_ms)
        return super().renew(key, owner, ttl_ms)

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

    def _granted_ttl(self, lock: Redlock, ttl_ms: int) -> int:
        return int(ttl_ms / 1000 * 1000)  # int(auto_release_time * 1000), as pottery sends it



def open_pottery_redlock(url: str) -> PotteryRedlock:
    return PotteryRedlock(url)
