"""Process-mode servers against the real binaries: lifecycle, faults and teardown with certainty."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from lockchaos.backends.base import ConfigurationError, FaultUnsupported, InfrastructureError
from lockchaos.harness.servers.process import (
    EtcdServer,
    ExternalServer,
    RedisServer,
    ServerHandle,
    provision,
)

ROOT = Path(__file__).resolve().parents[1]

needs_redis = [
    pytest.mark.redis,
]
needs_etcd = [
    pytest.mark.etcd,
]
both_kinds = pytest.mark.parametrize(
    "make",
    [
        pytest.param(RedisServer, id="redis", marks=needs_redis),
        pytest.param(EtcdServer, id="etcd", marks=needs_etcd),
    ],
)


def gone(pid: int) -> bool:
    """Dead, or a zombie nobody reaped: PID 1 in a container may not reap adopted children."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def redis_client(server: ServerHandle, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=timeout, socket_connect_timeout=timeout)


def etcd_client(server: ServerHandle, timeout: float = 2) -> Any:
    import etcd3

    return etcd3.client(server.host, server.port, timeout=timeout)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


def run_harness(code: str) -> subprocess.Popen[str]:
    """A separate harness process, so that it can be killed or interrupted without killing pytest."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# --- starting ---------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_starts_on_loopback_and_answers_ping(redis_server: RedisServer) -> None:
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_client(redis_server).ping()
    assert isinstance(redis_server, ServerHandle)


@pytest.mark.etcd
def test_etcd_starts_and_serves_kv(etcd_server: EtcdServer) -> None:
    assert etcd_server.url == f"etcd://127.0.0.1:{etcd_server.port}"
    client = etcd_client(etcd_server)
    client.put("k", "v")
    assert client.get("k")[0] == b"v"
    # Fast timing lowers etcd's lease minimum to one second; the adapter's capabilities depend on it.
    assert client.lease(1).granted_ttl == 1
    assert etcd_server.min_lease_ttl_ms == 1000


@both_kinds
def test_listens_only_on_127_0_0_1(make: Callable[[], ServerHandle]) -> None:
    with make() as server:
        assert server.pid is not None
        listening = [
            c.laddr for c in psutil.Process(server.pid).net_connections("inet") if c.status == "LISTEN"
        ]
        assert server.port in {addr.port for addr in listening}
        assert {addr.ip for addr in listening} == {"127.0.0.1"}


@both_kinds
def test_server_runs_in_its_own_session_so_terminal_ctrl_c_misses_it(
    make: Callable[[], ServerHandle],
) -> None:
    with make() as server:
        assert server.pid is not None
        assert os.getsid(server.pid) == server.pid != os.getsid(0)


@pytest.mark.redis
def test_server_started_from_a_short_lived_thread_outlives_the_thread() -> None:
    # PR_SET_PDEATHSIG follows the forking *thread*; a nemesis thread must not take its server along.
    started: list[RedisServer] = []
    thread = threading.Thread(target=lambda: started.append(RedisServer().start()))
    thread.start()
    thread.join()
    with started[0] as server:
        time.sleep(0.2)
        assert server.is_running()
        assert redis_client(server).ping()


@pytest.mark.redis
@pytest.mark.etcd
def test_provision_starts_the_named_kind_and_rejects_unknown_ones() -> None:
    with provision("redis", persistence=True) as server:
        assert isinstance(server, RedisServer) and server.persistence and server.is_running()
    with pytest.raises(ConfigurationError, match="mongo"):
        provision("mongo")


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("persistence", [True, False], ids=["aof", "no-persistence"])
def test_kill_and_restart_keeps_port_and_aof_data(persistence: bool) -> None:
    with RedisServer(persistence=persistence) as server:
        port, first_pid = server.port, server.pid
        redis_client(server).set("lock", "owner-1")
        server.kill()
        assert not server.is_running() and first_pid is not None and gone(first_pid)
        server.restart()
        assert server.port == port and server.pid != first_pid
        value = redis_client(server).get("lock")
        assert value == (b"owner-1" if persistence else None)


@pytest.mark.etcd
def test_etcd_restart_keeps_data(etcd_server: EtcdServer) -> None:
    etcd_client(etcd_server).put("lock", "owner-1")
    port = etcd_server.port
    etcd_server.restart()  # while running: kill -9 first
    assert etcd_server.port == port
    assert etcd_client(etcd_server).get("lock")[0] == b"owner-1"


@pytest.mark.redis
def test_pause_makes_calls_time_out_and_resume_recovers(redis_server: RedisServer) -> None:
    client = redis_client(redis_server, timeout=0.3)
    redis_server.pause()
    assert redis_server.paused and redis_server.is_running()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    redis_server.resume()
    assert not redis_server.paused
    assert redis_client(redis_server).ping()


@pytest.mark.etcd
def test_etcd_pause_makes_calls_time_out_and_resume_recovers(etcd_server: EtcdServer) -> None:
    import etcd3.exceptions

    client = etcd_client(etcd_server, timeout=0.3)
    client.put("k", "v")
    etcd_server.pause()
    with pytest.raises(etcd3.exceptions.ConnectionTimeoutError):
        client.get("k")
    etcd_server.resume()
    assert wait_until(lambda: etcd_client(etcd_server).get("k")[0] == b"v")


@pytest.mark.redis
def test_faults_on_a_server_that_is_not_running_raise_infrastructure_error() -> None:
    server = RedisServer()
    with pytest.raises(InfrastructureError, match="never started"):
        server.pause()
    with pytest.raises(InfrastructureError, match="not started"):
        server.restart()
    with server:
        server.kill()
        for fault in (server.kill, server.pause, server.resume):
            with pytest.raises(InfrastructureError, match=r"not running \(exited with status -9\)"):
                fault()
        server.restart()  # the way back from a kill
        assert server.is_running()


@pytest.mark.redis
def test_restart_fails_clearly_when_the_port_was_taken_meanwhile(redis_server: RedisServer) -> None:
    redis_server.kill()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", redis_server.port))
        squatter.listen()
        with pytest.raises(InfrastructureError, match=f"took port {redis_server.port}"):
            redis_server.restart()
    redis_server.restart()
    assert redis_client(redis_server).ping()


# --- teardown with certainty --------------------------------------------------------------------


@both_kinds
def test_stop_leaves_no_process_and_no_temp_dir(make: Callable[[], RedisServer | EtcdServer]) -> None:
    server = make().start()
    pid, workdir = server.pid, server.workdir
    assert pid is not None and workdir is not None and workdir.is_dir()
    server.stop()
    assert not psutil.pid_exists(pid)  # reaped, not merely dead
    assert not workdir.exists()
    server.stop()  # idempotent


@both_kinds
def test_stop_ends_a_paused_server(make: Callable[[], ServerHandle]) -> None:
    server = make().start()
    pid = server.pid
    server.pause()
    started = time.monotonic()
    server.stop()
    assert pid is not None and not psutil.pid_exists(pid)
    assert time.monotonic() - started < 2  # SIGTERM was honoured, no wait for the SIGKILL fallback


@pytest.mark.redis
def test_exception_midway_still_tears_down() -> None:
    with pytest.raises(RuntimeError, match="scenario blew up"), RedisServer() as server:
        pid, workdir = server.pid, server.workdir
        raise RuntimeError("scenario blew up")
    assert pid is not None and workdir is not None
    assert not psutil.pid_exists(pid)
    assert not workdir.exists()


@pytest.mark.redis
@pytest.mark.parametrize("ending", ["normal exit", "ctrl-c"])
def test_harness_exit_or_ctrl_c_stops_forgotten_servers(ending: str) -> None:
    harness = run_harness(f"""
        import signal, time
        from lockchaos.harness.servers.process import RedisServer
        # As at an interactive terminal, even when pytest itself runs as a background job.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server = RedisServer().start()  # never stopped explicitly
        print(server.pid, server.workdir, flush=True)
        if {ending == "ctrl-c"}:
            time.sleep(60)
    """)
    try:
        assert harness.stdout is not None
        pid_text, workdir = harness.stdout.readline().split()
        if ending == "ctrl-c":
            harness.send_signal(signal.SIGINT)
        harness.wait(10)
    finally:
        harness.kill()
    assert gone(int(pid_text))
    assert not Path(workdir).exists()


@pytest.mark.redis
def test_killed_harness_leaves_no_server_behind() -> None:
    harness = run_harness("""
        import time
        from lockchaos.harness.servers.process import RedisServer
        server = RedisServer().start()
        print(server.pid, server.workdir, flush=True)
        time.sleep(60)
    """)
    try:
        assert harness.stdout is not None
        pid_text, workdir = harness.stdout.readline().split()
    finally:
        harness.kill()
    harness.wait(5)
    assert wait_until(lambda: gone(int(pid_text)), timeout=2), "server outlived its SIGKILLed harness"
    # SIGKILL skips atexit: the watchdog the harness started removes the temp dir.
    assert wait_until(lambda: not Path(workdir).exists(), timeout=5), "temp dir outlived its harness"


# --- startup failures -------------------------------------------------------------------------


def test_missing_binary_names_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("LOCKCHAOS_REDIS_SERVER", raising=False)
    monkeypatch.delenv("LOCKCHAOS_ETCD", raising=False)
    with pytest.raises(InfrastructureError) as info:
        RedisServer().start()
    assert str(info.value) == (
        "redis-server not found on PATH: install Debian's package redis-server "
        "(apt-get install redis-server)"
    )
    with pytest.raises(InfrastructureError, match=r"etcd not found on PATH: .*apt-get install etcd-server"):
        EtcdServer().start()
    monkeypatch.setenv("LOCKCHAOS_ETCD", "/nowhere/etcd")
    with pytest.raises(InfrastructureError, match=r"/nowhere/etcd.*LOCKCHAOS_ETCD.*etcd-server"):
        EtcdServer().start()
    with pytest.raises(InfrastructureError, match=r"/nowhere/redis.*binary argument"):
        RedisServer(binary="/nowhere/redis").start()


def fake_binary(tmp_path: Path, body: str) -> str:
    """A real process that misbehaves the way a broken server install would."""
    script = tmp_path / "broken-server"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


def test_server_exiting_early_reports_its_log_tail_and_leaves_nothing(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, """
        for i in $(seq 1 30); do echo "line $i"; done
        echo "workdir=$PWD"
        echo "FATAL: cannot open config"
        exit 3
    """)
    server = RedisServer(binary=binary)
    with pytest.raises(InfrastructureError) as info:
        server.start()
    message = str(info.value)
    assert "exited with status 3" in message and "FATAL: cannot open config" in message
    assert "line 23" in message and "line 22" not in message  # the last ten lines only
    assert not Path(message.split("workdir=")[1].split()[0]).exists()
    assert server.workdir is None and server.pid is not None and not psutil.pid_exists(server.pid)


def test_server_not_ready_by_deadline_is_killed_and_cleaned_up(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, """
        echo "workdir=$PWD"
        echo "warming up forever"
        exec sleep 30
    """)
    server = EtcdServer(binary=binary, startup_timeout=0.5)
    with pytest.raises(InfrastructureError, match=r"not ready within 0.5 s(.|\n)*warming up forever") as info:
        server.start()
    workdir = Path(str(info.value).split("workdir=")[1].split()[0])
    assert not workdir.exists()
    assert server.pid is not None and not psutil.pid_exists(server.pid)


# --- external servers ---------------------------------------------------------------------------


def test_external_server_refuses_process_faults() -> None:
    server = ExternalServer("redis://:secret@127.0.0.1:6390/2")
    assert (server.url, server.host, server.port, server.pid) == (
        "redis://:secret@127.0.0.1:6390/2", "127.0.0.1", 6390, None,
    )
    with server:
        for fault in (server.kill, server.restart, server.pause, server.resume):
            with pytest.raises(FaultUnsupported, match="did not start"):
                fault()
    cluster = ExternalServer("etcd://10.0.0.1:2379,10.0.0.2:2379")
    assert (cluster.kind, cluster.host, cluster.port) == ("etcd", "10.0.0.1", 2379)
    with pytest.raises(FaultUnsupported, match="no PID"):
        cluster.kill()
    with pytest.raises(ConfigurationError):
        ExternalServer("mysql://db:3306")
