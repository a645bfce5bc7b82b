"""Clients that stay unusable after a server fault, on the fake, for the liveness checker to catch.

``failed_node`` copies python3-etcd3's single-endpoint behaviour: after one call fails for want of
the server, the client marks its only endpoint failed for 300 s and every call raises at once,
long after the server is back. ``unmapped_errors`` raises a raw ``ConnectionError`` instead of
``BackendUnavailable`` while the server is down (an adapter that forgot its error mapping).
"""

from __future__ import annotations

from lockchaos.backends.base import BackendUnavailable, Lease
from lockchaos.backends.fake import FakeClient, open_fake

FAILED_FOR_S = 300.0


class FailedNodeClient(FakeClient):
    """Marks its endpoint failed for 300 s after any unavailable call (as etcd3's client does)."""

    failed_until_ns = 0

    def _guard(self) -> None:
        if self.server.clock.now_ns() < self.failed_until_ns:
            raise BackendUnavailable("Trying to use a failed node")

    def _mark(self) -> None:
        self.failed_until_ns = self.server.clock.now_ns() + round(FAILED_FOR_S * 1e9)

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        self._guard()
        try:
            return super().acquire(key, owner, ttl_ms)
        except BackendUnavailable:
            self._mark()
            raise

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        self._guard()
        try:
            return super().renew(key, owner, ttl_ms)
        except BackendUnavailable:
            self._mark()
            raise

    def release(self, key: str, owner: str) -> bool:
        self._guard()
        try:
            return super().release(key, owner)
        except BackendUnavailable:
            self._mark()
            raise


class UnmappedErrorsClient(FakeClient):
    """Lets the server being down through as a raw ``ConnectionError``: the error mapping is missing."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        try:
            return super().acquire(key, owner, ttl_ms)
        except BackendUnavailable as exc:
            raise ConnectionError(str(exc)) from None


def failed_node(url: str) -> FailedNodeClient:
    base = open_fake(url)
    return FailedNodeClient(base.server, timeout_ms=base.timeout_ms)


def unmapped_errors(url: str) -> UnmappedErrorsClient:
    base = open_fake(url)
    return UnmappedErrorsClient(base.server, timeout_ms=base.timeout_ms)


_opens: dict[str, int] = {}


def reopen_fails_once(url: str) -> FakeClient:
    """Its factory raises a raw ``ConnectionError`` once, when a crashed worker reopens its client
    (the fifth open of a three-worker run: probe, three workers, then the reopen)."""
    _opens[url] = _opens.get(url, 0) + 1
    if _opens[url] == 5:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    return open_fake(url)
