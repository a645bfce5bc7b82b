"""The shape every library wrapper shares: one library lock object per (key, owner) in one client.

Libraries tie ownership to a random value kept inside a lock object, so "owner X renews key K" can
only mean "the lock object X created for K renews". A client keeps those objects as one process
keeps its own locks; clients share nothing, as processes share nothing (no registry across clients).
Subclasses supply the library calls; this class supplies input checks, the table and the leases.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from ..base import Capabilities, Closing, Lease, LockChaosError, validate_call

L = TypeVar("L")


class LibraryLock(Closing, abc.ABC, Generic[L]):
    """A LockBackend over a library whose lock objects are of type ``L``."""

    name: str
    capabilities: Capabilities

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[L, int]] = {}
        """(key, owner) -> (the library object that owner uses for key, the TTL it was made with)."""
        self._table = threading.Lock()
        self._closed = False

    # --- what a library supplies -----------------------------------------------------------------

    @abc.abstractmethod
    def _new_lock(self, key: str, ttl_ms: int) -> L:
        """A fresh library lock object for ``key`` with TTL ``ttl_ms`` (no I/O where the library allows)."""

    @abc.abstractmethod
    def _try_acquire(self, lock: L) -> bool:
        """The library's non-blocking acquire."""

    @abc.abstractmethod
    def _extend(self, lock: L, ttl_ms: int) -> bool:
        """The library's renewal; False when the library says the lock is not held by this object."""

    @abc.abstractmethod
    def _release(self, lock: L) -> bool:
        """The library's release; False when the library says the lock is not held by this object."""

    @abc.abstractmethod
    def _present(self, key: str) -> bool:
        """Whether anyone holds ``key``, read with the library's own key naming."""

    @abc.abstractmethod
    def _errors(self, op: str, key: str) -> contextlib.AbstractContextManager[None]:
        """Translate the library's unknown-outcome errors into BackendUnavailable."""

    @abc.abstractmethod
    def _granted_ttl(self, lock: L, ttl_ms: int) -> int:
        """The TTL (ms) the library really applies for a request of ``ttl_ms``."""

    def _close_client(self) -> None:
        """Close the library's client (subclasses with one)."""

    def _forget(self, lock: L) -> None:
        """Drop a lock object as a process exit would (stop its background threads, never release)."""

    # --- LockBackend -----------------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        self._check_open()
        current = self._get(key, owner)
        # A lock object is made with its TTL, as teams write them; a new TTL is a new object, kept only
        # if it wins (the old object may still hold the key, and only it can release it).
        lock = current[0] if current is not None and current[1] == ttl_ms else self._new_lock(key, ttl_ms)
        with self._errors("acquire", key):
            won = self._try_acquire(lock)
        if not won:
            return None
        with self._table:
            old = self._locks.get((key, owner))
            self._locks[(key, owner)] = (lock, ttl_ms)
        if old is not None and old[0] is not lock:
            self._forget(old[0])
        return Lease(key=key, owner=owner, token=None, ttl_ms=self._granted_ttl(lock, ttl_ms))

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        self._check_open()
        current = self._get(key, owner)
        if current is None:
            return None  # this process never made a lock object for key: nothing to renew with
        lock = current[0]
        with self._errors("renew", key):
            renewed = self._extend(lock, ttl_ms)
        return Lease(key=key, owner=owner, token=None, ttl_ms=self._granted_ttl(lock, ttl_ms)) if renewed else None

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        self._check_open()
        current = self._get(key, owner)
        if current is None:
            return False
        with self._errors("release", key):
            return self._release(current[0])

    def holder(self, key: str) -> Lease | None:
        """Presence only: the library keeps the owner as a random value only its lock object knows."""
        validate_call(key)
        self._check_open()
        with self._errors("holder", key):
            held = self._present(key)
        return Lease(key=key, owner="", token=None, ttl_ms=0) if held else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._table:
            locks = [lock for lock, _ in self._locks.values()]
            self._locks.clear()
        for lock in locks:
            with contextlib.suppress(Exception):
                self._forget(lock)
        with contextlib.suppress(Exception):
            self._close_client()

    # --- helpers ---------------------------------------------------------------------------------

    def _get(self, key: str, owner: str) -> tuple[L, int] | None:
        with self._table:
            return self._locks.get((key, owner))

    def _check_open(self) -> None:
        if self._closed:
            raise LockChaosError(f"{self.name} client is closed")

    def lock_objects(self) -> Iterator[tuple[str, str, L]]:
        """The library lock objects this client holds handles to, for tests and tooling."""
        with self._table:
            items = [(k, o, lock) for (k, o), (lock, _) in self._locks.items()]
        yield from items
