"""A server URL is judged at argument time by the backend's own parser: exit 2, one line, nothing created.

A valid URL of a server that does not answer is infrastructure (exit 3), said with its real cause,
within seconds, also before any run directory exists.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lockchaos.backends.base import ConfigurationError
from lockchaos.backends.etcd import parse_etcd_url
from lockchaos.backends.redis import parse_redis_url
from lockchaos.backends.urlopts import check_server_url
from lockchaos.harness.cli import main

BAD_URLS = [
    ("redis://127.0.0.1:99999/0", "Port out of range"),
    ("redis://127.0.0.1:0/0", "port 0"),
    ("redis://127.0.0.1:abc/0", "bad host:port"),
    ("etcd://127.0.0.1:abc", "bad host:port"),
    ("etcd://127.0.0.1:2379,", "empty endpoint"),
    ("redis://127.0.0.1:6379/0#frag", "#fragment"),
    ("etcd://127.0.0.1:2379#frag", "#fragment"),
    ("redis://127.0.0.1:6379/abc", "database must be a number"),
    ("etcd://127.0.0.1:2379/abc", "has a path"),
    ("redis://127.0.0.1:6379/0?bogus=1", "unknown redis URL option(s) ['bogus']"),
    ("etcd://127.0.0.1:2379?bogus=1", "unknown etcd URL option(s) ['bogus']"),
    ("redis://127.0.0.1:6379/0?prefix=a{b", "must not contain '{'"),
    ("redis://127.0.0.1:6379/0?prefix=", "prefix must not be empty"),
    ("redis://127.0.0.1:6379/0?timeout_ms=0", "timeout_ms must be between"),
    ("redis://[::1", "malformed redis URL"),
    ("etcd://[::1", "malformed etcd URL"),
    ("mongo://127.0.0.1", "must be a redis:// or etcd:// URL"),
]


@pytest.mark.parametrize("command", ["soak", "contract"])
@pytest.mark.parametrize("url, message", BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_bad_url_exits_2_with_one_line_and_creates_nothing(command: str, url: str, message: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the default run directory would appear here
    argv = [command, "--url", url] + (["--scenario", "clean-handover"] if command == "soak" else [])
    start = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - start < 5
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lockchaos: error: ")
    assert message in lines[0]
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url, message", [
    ("redis://127.0.0.1:99999/0", "Port out of range"),
    ("redis://127.0.0.1:6379/0#frag", "#fragment"),
    ("etcd://127.0.0.1:abc", "bad host:port"),
    ("redis://[::1", "malformed redis URL"),
])
def test_bad_url_for_an_adapter_exits_2_before_its_factory_runs(url: str, message: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["soak", "--url", url, "--adapter", "tests.broken_adapters:correct", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_an_adapter_keeps_its_own_url_options(tmp_path: Path) -> None:
    """Options our backends do not know are the adapter's business: only the endpoints are ours to judge."""
    check_server_url("redis://127.0.0.1:6379/0?ssl=1&pool=3", options=False)
    with pytest.raises(ConfigurationError, match="unknown redis URL option"):
        check_server_url("redis://127.0.0.1:6379/0?ssl=1&pool=3")


@pytest.mark.parametrize("url", [u for u, _ in BAD_URLS if not u.startswith("mongo")])
def test_argument_check_and_backend_agree_on_every_bad_url(url: str) -> None:
    """One parser: what the CLI refuses is exactly what the backend would refuse when opened."""
    parse = parse_redis_url if url.startswith("redis") else parse_etcd_url
    with pytest.raises(ConfigurationError) as at_open:
        parse(url)
    with pytest.raises(ConfigurationError) as at_argument_time:
        check_server_url(url)
    assert str(at_open.value) == str(at_argument_time.value)


@pytest.mark.parametrize("command", ["soak", "contract"])
@pytest.mark.parametrize("url, cause", [
    ("redis://127.0.0.1:1/0", "Connection refused"),
    ("etcd://127.0.0.1:1", "UNAVAILABLE"),
])
def test_unreachable_valid_url_exits_3_naming_the_real_cause_within_seconds(
        command: str, url: str, cause: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = [command, "--url", url] + (["--scenario", "all", "--out", str(out)] if command == "soak" else [])
    start = time.monotonic()
    assert main(argv) == 3
    assert time.monotonic() - start < 15
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "cannot reach" in lines[0] and cause in lines[0]
    assert "could not remove" not in lines[0]
    assert not out.exists()
