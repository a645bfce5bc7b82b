"""Bad usage gets one clear line on stderr and exit status 2, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lockchaos.harness.cli import main

BAD_USAGE = [
    (["contract", "--backend", "mongo"], "invalid choice: 'mongo'"),
    (["contract", "--bogus"], "unrecognized arguments: --bogus"),
    (["contract", "--adapter", "nope.nothing:factory", "--server", "none"], "cannot import adapter module"),
    (["contract", "--adapter", "tests.broken_adapters", "--server", "none"],
     "must look like pkg.mod:factory"),
    (["contract", "--adapter", "tests.broken_adapters:missing", "--server", "none"], "has no 'missing'"),
    (["contract", "--adapter", "tests.broken_adapters:RTT_S", "--server", "none"], "is not callable"),
    (["contract", "--adapter", "tests.broken_adapters:correct"], "--adapter needs --server"),
    (["contract", "--backend", "fake", "--adapter", "tests.broken_adapters:correct", "--server", "none"],
     "either --backend or --adapter"),
    (["contract", "--server", "redis"], "--server goes with --adapter"),
    ([], "the following arguments are required: command"),
    (["soak", "--scenario", "nope"], "unknown scenario 'nope'"),
    (["soak", "--duration", "0"], "--duration must be > 0"),
    (["soak", "--duration", "abc"], "--duration must be a number"),
    (["soak", "--duration", "nan"], "--duration must be > 0"),
    (["soak", "--seed", "-1"], "--seed must be between 0"),
    (["soak", "--seed", "x"], "--seed must be an integer"),
    (["soak", "--workers", "0"], "--workers must be between 1 and 256"),
    (["soak", "--workers", "1000"], "--workers must be between 1 and 256"),
    (["soak", "--ttl-ms", "0"], "--ttl-ms must be between 1"),
    (["soak", "--ttl-ms", "1.5"], "--ttl-ms must be an integer"),
    (["soak", "--backend", "redis", "--virtual-time"], "--virtual-time runs the fake only"),
    (["soak", "--virtual-time"], "--virtual-time runs the fake only"),
    (["soak", "--backend", "fake", "--out", "pyproject.toml"], "is not an empty directory"),
    (["soak", "--adapter", "nope:x", "--server", "none"], "cannot import adapter module"),
    (["scenarios", "--extra"], "unrecognized arguments: --extra"),
    (["soak", "--adapter", "tests.kill_helpers:raises", "--server", "none"],
     "raised RuntimeError: factory cannot connect to anything"),
    (["soak", "--adapter", "tests.kill_helpers:returns_none", "--server", "none"], "is not a LockBackend"),
    pytest.param(["contract", "--adapter", "tests.kill_helpers:raises", "--server", "redis"], "raised RuntimeError",
                 marks=pytest.mark.redis),
    (["report"], "the following arguments are required"),
    (["check"], "the following arguments are required"),
    (["soak", "--backend", "all", "--server", "none"], "--server goes with --adapter"),
]


def _usage_id(case: object) -> str:
    argv = case.values[0] if isinstance(case, type(pytest.param())) else case[0]  # type: ignore[index]
    return " ".join(argv) or "no-args"


@pytest.mark.parametrize("argv, message", BAD_USAGE, ids=[_usage_id(c) for c in BAD_USAGE])
def test_bad_usage_exits_2_with_one_line(argv: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lockchaos: error: ")
    assert message in lines[0]
    assert captured.out == ""


def test_hanging_factory_is_a_usage_error_within_the_bound(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from lockchaos.harness.run import targets

    monkeypatch.setattr(targets, "FACTORY_TIMEOUT_S", 1.0)
    start = time.monotonic()
    assert main(["soak", "--adapter", "tests.kill_helpers:hangs", "--server", "none"]) == 2
    assert time.monotonic() - start < 5
    assert "did not return within 1 s" in capsys.readouterr().err


@pytest.mark.parametrize("env, value, message", [
    ("LOCKCHAOS_REDIS_SERVER", "/nonexistent/redis-server", "redis-server"),
    ("LOCKCHAOS_ETCD", "/nonexistent/etcd", "etcd"),
])
def test_missing_server_binary_exits_3_naming_it(env: str, value: str, message: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(env, value)
    backend = "redis" if "REDIS" in env else "etcd"
    assert main(["contract", "--backend", backend]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.redis
def test_wrong_protocol_url_exits_3_within_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from lockchaos.harness.servers.process import EtcdServer

    with EtcdServer() as etcd:
        start = time.monotonic()
        assert main(["contract", "--url", f"redis://127.0.0.1:{etcd.port}/0"]) == 3
        assert time.monotonic() - start < 10
    assert "cannot reach" in capsys.readouterr().err


def test_factory_returning_a_non_backend_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--adapter", "builtins:str", "--server", "none"]) == 2
    assert "is not a LockBackend" in capsys.readouterr().err


def test_console_script_and_module_entry_point_agree() -> None:
    proc = subprocess.run([sys.executable, "-m", "lockchaos", "contract", "--backend", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("lockchaos: error:")


def test_backend_takes_several_comma_separated_choices_in_order_without_repeats() -> None:
    from lockchaos.harness.run.targets import BACKENDS, LIBRARY_BACKENDS, backend_names

    assert backend_names("all,libs") == (*BACKENDS, *LIBRARY_BACKENDS)
    assert backend_names("redis,fake,redis") == ("redis", "fake")
    assert backend_names(None) == BACKENDS


def test_unknown_backend_in_a_list_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", "--backend", "redis,nope", "--virtual-time"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'nope'" in err[0]
