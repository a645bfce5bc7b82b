"""A lock that is correct on one key and wrong across keys: only a many-key run can catch it.

``fake_stale_cleanup`` is the reference fake with an adapter's "clean up after a crash" shortcut,
written for an application that holds one lock: before acquiring, it force-deletes the key the
process last acquired, if that was another key, assuming whoever held it is gone. The slot is per
process (shared by every client, as a module-level cache is), so an acquire on key B deletes key A
under A's live holder, and a contender is granted A while it is held. On one key the cleanup never
fires, and every single-key scenario passes.
"""

from __future__ import annotations

import threading

from lockchaos.backends.base import Lease
from lockchaos.backends.fake import FakeClient, open_fake

_LAST_KEY: dict[str, str] = {}
_LOCK = threading.Lock()


class StaleCleanupClient(FakeClient):
    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        with _LOCK:
            previous = _LAST_KEY.get(self.name)
        if previous is not None and previous != key:
            stale = super().holder(previous)
            if stale is not None:
                super().release(previous, stale.owner)  # the bug: someone else's live lock
        lease = super().acquire(key, owner, ttl_ms)
        if lease is not None:
            with _LOCK:
                _LAST_KEY[self.name] = key
        return lease


def fake_stale_cleanup(url: str) -> FakeClient:
    plain = open_fake(url)
    client = StaleCleanupClient(plain.server, timeout_ms=plain.timeout_ms)
    plain.close()
    return client
