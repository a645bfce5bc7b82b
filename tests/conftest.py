from __future__ import annotations

import shutil

import pytest

pytest_plugins = ["pytester"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Tests of real backends never skip quietly: without the servers the run fails, loudly."""
    missing = [b for b in ("redis-server", "etcd") if shutil.which(b) is None]
    if missing:
        raise pytest.UsageError(f"missing server binaries {missing}: install Debian's redis-server and "
                                "etcd-server (`make test` does)")
