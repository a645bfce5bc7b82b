from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# `make test-fast`: no root, no servers, no Docker, no browser, nothing that waits tens of seconds of real
# time. Tests that need one of those carry its marker and are deselected there; `make test` (CI) runs them
# all and never skips one quietly.
FAST = os.environ.get("LOCKCHAOS_TEST_FAST") == "1"
RESOURCE_MARKERS = ("redis", "etcd", "docker", "browser", "root")
OFF_LIMITS = ("redis-server", "redis-sentinel", "redis-benchmark", "etcd", "etcdctl", "docker", "dockerd",
              "chromium", "mount")


def _fence_off_binaries() -> None:
    """In test-fast, an unmarked test that reaches for a server fails loudly instead of starting one.

    Shims first on PATH reach the harness in-process and in every child it spawns (which resolve
    binaries with ``shutil.which``), so a missing marker shows up as a red test, not as a server
    started behind a contributor's back.
    """
    shims = Path(tempfile.mkdtemp(prefix="lockchaos-test-fast-"))
    _SHIMS.append(shims)
    for name in OFF_LIMITS:
        shim = shims / name
        shim.write_text(f"#!/bin/sh\necho 'lockchaos test-fast: {name} is off limits here; mark the test "
                        f"with its resource ({', '.join(RESOURCE_MARKERS)})' >&2\nexit 97\n")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["PATH"] = f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"


_SHIMS: list[Path] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    for shims in _SHIMS:
        shutil.rmtree(shims, ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Tests of real backends never skip quietly: without the servers the run fails, loudly."""
    if FAST:
        _fence_off_binaries()
        return
    missing = [b for b in ("redis-server", "etcd") if shutil.which(b) is None]
    if missing:
        raise pytest.UsageError(f"missing server binaries {missing}: install Debian's redis-server and "
                                "etcd-server (`make test` does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not FAST:
        return
    keep, drop = [], []
    for item in items:
        (drop if any(item.get_closest_marker(m) for m in (*RESOURCE_MARKERS, "slow")) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module", params=["fake", pytest.param("redis", marks=pytest.mark.redis),
                                        pytest.param("etcd", marks=pytest.mark.etcd)])
def each_backend_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of each shipped single-server backend; Redis and etcd are real servers of the module's own,
    started on free loopback ports and stopped after it."""
    from lockchaos.harness.servers.process import EtcdServer, RedisServer

    if request.param == "fake":
        yield f"fake://{request.module.__name__.rsplit('.', 1)[-1]}"
        return
    server_type = RedisServer if request.param == "redis" else EtcdServer
    with server_type() as server:
        yield server.url
