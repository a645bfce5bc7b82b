"""A user's adapter with a library-style background renewal thread (python-redis-lock's auto_renewal,
etcd3's keep-alive): it keeps every lease it holds alive until released, whatever its caller does.

Used to show that a paused worker process is paused whole: its renewal thread stops with it.
"""

from __future__ import annotations

import contextlib
import threading

from lockchaos.backends import open_backend
from lockchaos.backends.base import Lease, LockBackend

RENEW_EVERY_S = 0.04


class AutoRenewing:
    """Delegates to our client; a daemon thread renews every held lease every ``RENEW_EVERY_S``."""

    def __init__(self, inner: LockBackend) -> None:
        self.inner = inner
        self.name = f"auto-renewing-{inner.name}"
        self.capabilities = inner.capabilities
        self._held: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._renew_forever, name="auto-renewal", daemon=True).start()

    def _renew_forever(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            with self._lock:
                held = list(self._held.items())
            for key, (owner, ttl_ms) in held:
                with contextlib.suppress(Exception):
                    if self.inner.renew(key, owner, ttl_ms) is None:
                        with self._lock:
                            self._held.pop(key, None)

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = self.inner.acquire(key, owner, ttl_ms)
        if lease is not None:
            with self._lock:
                self._held[key] = (owner, ttl_ms)
        return lease

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self.inner.renew(key, owner, ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        with self._lock:
            self._held.pop(key, None)
        return self.inner.release(key, owner)

    def holder(self, key: str) -> Lease | None:
        return self.inner.holder(key)

    def close(self) -> None:
        self._stop.set()
        self.inner.close()


def auto_renewing(url: str) -> LockBackend:
    return AutoRenewing(open_backend(url))



def explodes_in_a_revived_worker(url: str) -> LockBackend:
    """Opens fine in the harness and in each worker's first process; raises in a worker process
    started after a crash, as a factory that breaks midway would."""
    import os

    if not os.environ.get("LOCKCHAOS_WORKER", "#1").endswith("#1"):
        raise RuntimeError("adapter factory exploded in a revived worker process")
    return open_backend(url)


SLOW_ACQUIRE_S = 2.0


class SlowAcquire(AutoRenewing):
    """Every acquire takes ``SLOW_ACQUIRE_S`` before it is sent: a call a crash will catch in flight."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        import time

        time.sleep(SLOW_ACQUIRE_S)
        return super().acquire(key, owner, ttl_ms)


def slow_acquire(url: str) -> LockBackend:
    return SlowAcquire(open_backend(url))


NOISE = "noisy-library: renewal thread says hello"


def noisy(url: str) -> LockBackend:
    """Our client, opened by a library that prints to stderr (as python-redis-lock's dying thread does)."""
    import os
    import sys

    print(f"{NOISE} in {os.environ.get('LOCKCHAOS_WORKER', 'the harness')}", file=sys.stderr, flush=True)
    return open_backend(url)


BLOCKED_RELEASE_S = 120.0


class BlockedRelease:
    """Our client, except that every release blocks ``BLOCKED_RELEASE_S`` first (as redis-py's silent
    retries can, far past any TTL): a call still in flight when the run ends."""

    def __init__(self, inner: LockBackend) -> None:
        self.inner = inner
        self.name = f"blocked-release-{inner.name}"
        self.capabilities = inner.capabilities

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self.inner.acquire(key, owner, ttl_ms)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self.inner.renew(key, owner, ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        import time

        time.sleep(BLOCKED_RELEASE_S)
        return self.inner.release(key, owner)

    def holder(self, key: str) -> Lease | None:
        return self.inner.holder(key)

    def close(self) -> None:
        self.inner.close()


def blocked_release(url: str) -> LockBackend:
    return BlockedRelease(open_backend(url))
