"""docker/nightly.py, the compose harness's entry point: what it waits for, and the Sentinel configs
it writes for docker-compose.clusters.yml (the image runs it as a script, so it is loaded by path)."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _nightly() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockchaos_nightly", ROOT / "docker" / "nightly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cluster_url_is_waited_for_at_every_member() -> None:
    nightly = _nightly()
    assert nightly.endpoints("etcd://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3?prefix=x") == [
        ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)]
    assert nightly.endpoints("redis://127.0.0.1/0") == [("127.0.0.1", 6379)]


def test_wait_for_a_cluster_fails_while_one_member_is_down() -> None:
    nightly = _nightly()
    with socket.socket() as up, socket.socket() as down:
        up.bind(("127.0.0.1", 0))
        up.listen()
        down.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"etcd://127.0.0.1:{up.getsockname()[1]},127.0.0.1:{down.getsockname()[1]}"
        assert nightly.wait_for(url, 0.5) is False
        assert nightly.wait_for(f"etcd://127.0.0.1:{up.getsockname()[1]}", 5.0) is True


def test_sentinel_config_names_the_primary_and_each_sentinels_own_port(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nightly = _nightly()
    monkeypatch.setenv("LOCKCHAOS_SENTINEL_REDIS0_PORT", "7000")
    for i, port in enumerate(("7100", "7101", "7102")):
        monkeypatch.setenv(f"LOCKCHAOS_SENTINEL{i}_PORT", port)
    dirs = [tmp_path / f"s{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    assert nightly.sentinel_config([str(d) for d in dirs]) == 0
    for d, port in zip(dirs, ("7100", "7101", "7102"), strict=True):
        conf = (d / "sentinel.conf").read_text().splitlines()
        assert f"port {port}" in conf and "bind 127.0.0.1" in conf
        assert "sentinel monitor mymaster 127.0.0.1 7000 2" in conf
