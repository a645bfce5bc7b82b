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


def rendezvous(url: str) -> LockBackend:
    """The fake, once every process sharing ``$LOCKCHAOS_RENDEZVOUS`` (a directory) has got this far.

    Two soaks that meet here have both passed their argument checks and neither has written yet:
    what follows is a true race for the run directory.
    """
    import os
    from pathlib import Path

    where = Path(os.environ["LOCKCHAOS_RENDEZVOUS"])
    (where / str(os.getpid())).touch()
    deadline = time.monotonic() + 30
    while len(list(where.iterdir())) < int(os.environ.get("LOCKCHAOS_RENDEZVOUS_N", "2")):
        if time.monotonic() > deadline:
            raise RuntimeError("rendezvous: the other process never came")
        time.sleep(0.005)
    return open_backend(url)
