"""Adapter factories that misbehave on purpose, for the harness's own robustness tests."""

from __future__ import annotations

import itertools
import time

from lockchaos.backends import open_backend
from lockchaos.backends.base import LockBackend

_opened = itertools.count()


def explodes_midway(url: str) -> LockBackend:
    """Works for the first clients, then raises while the soak is running."""
    if next(_opened) >= 4:
        raise RuntimeError("adapter factory exploded midway")
    return open_backend(url)


def raises(url: str) -> LockBackend:
    raise RuntimeError("factory cannot connect to anything")


def hangs(url: str) -> LockBackend:
    time.sleep(3600)
    raise AssertionError("unreachable")


def returns_none(url: str) -> LockBackend:
    return None  # type: ignore[return-value]
