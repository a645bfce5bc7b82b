"""Clock faults on a real redis-server: launched under libfaketime, its wall clock stepped mid-run.

Each test talks to a real ``redis-server`` the test starts; the jump is the harness's own
``jump_clock`` (a rewritten control file), the effect is read back from Redis itself (``TIME``,
``EXISTS``, ``PTTL``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from lockchaos.backends.base import FaultUnsupported
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario
from lockchaos.harness.servers import faketime
from lockchaos.harness.servers.clusters import RedlockCluster
from lockchaos.harness.servers.process import RedisServer

pytestmark = pytest.mark.redis

TTL_MS = 10_000
ATTEMPTS = 3
"""A probe whose set-to-jump window outgrew the TTL's margin (a loaded machine) is retried on a fresh key."""


@pytest.fixture
def clocked() -> Iterator[RedisServer]:
    with RedisServer(clock_faults=True) as server:
        yield server


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=2, socket_connect_timeout=2)


def offset_s(c: redis.Redis) -> float:
    """The server's wall clock minus ours (same machine, so the read itself costs well under 0.1 s)."""
    before = time.time()
    sec, usec = c.time()
    return sec + usec / 1e6 - (before + time.time()) / 2


def shm_residue(pid: int) -> list[Path]:
    return [p for p in (Path(f"/dev/shm/faketime_shm_{pid}"), Path(f"/dev/shm/sem.faketime_sem_{pid}")) if p.exists()]


def test_server_under_libfaketime_starts_on_real_time(clocked: RedisServer) -> None:
    assert abs(offset_s(client(clocked))) < 0.5


def test_forward_jump_past_the_ttl_expires_a_key_at_once(clocked: RedisServer) -> None:
    c = client(clocked)
    for attempt in range(ATTEMPTS):
        key = f"lease-{attempt}"
        c.set(key, "holder", px=TTL_MS)
        set_at = time.monotonic()
        assert c.exists(key) == 1
        clocked.jump_clock(TTL_MS + 500)
        gone = c.exists(key) == 0
        if time.monotonic() - set_at < TTL_MS / 1000 / 2:  # else it might have expired on real time
            break
    else:
        pytest.fail(f"every probe took longer than half the TTL ({ATTEMPTS} attempts)")
    assert gone
    assert clocked.clock_offset_ms == (attempt + 1) * (TTL_MS + 500)
    assert offset_s(c) == pytest.approx(clocked.clock_offset_ms / 1000, abs=0.5)


def test_backward_jump_prolongs_a_key(clocked: RedisServer) -> None:
    c = client(clocked)
    c.set("lease", "holder", px=2_000)
    clocked.jump_clock(-5_000)
    assert c.pttl("lease") > 5_000  # 2 s left plus the 5 s the clock went back, less the calls


def test_clock_offset_survives_a_kill_and_restart_and_leaves_no_shm(clocked: RedisServer) -> None:
    clocked.jump_clock(3_000)
    killed = clocked.pid
    assert killed is not None
    clocked.kill()
    assert shm_residue(killed) == []
    clocked.restart()
    assert offset_s(client(clocked)) == pytest.approx(3.0, abs=0.5)


def test_stop_leaves_no_shm_behind() -> None:
    server = RedisServer(clock_faults=True).start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert shm_residue(pid) == []


def test_jump_clock_is_refused_on_a_redis_not_launched_for_clock_faults() -> None:
    with RedisServer() as plain, pytest.raises(FaultUnsupported, match="clock_faults"):
        plain.jump_clock(1_000)


def test_clock_jump_scenario_runs_on_real_redis(tmp_path: Path) -> None:
    r = run_scenario(backend_target("redis"), find_scenario("clock-jump"), RunOptions(seed=1, ttl_ms=300), tmp_path)
    assert r.status == "ran", r.reason
    assert r.observations is not None and r.observations.faults.get("clock-jump") == 1
    assert r.judgement is not None and not r.judgement.failed, r.judgement.to_dict()


def test_redlock_clock_jump_steps_one_master_only() -> None:
    with RedlockCluster(clock_faults=True) as cluster:
        cluster.jump_clock(4_000)
        offsets = {node.name: offset_s(client(node)) for node in cluster.nodes}
    assert offsets.pop(RedlockCluster.CLOCK_MASTER) == pytest.approx(4.0, abs=0.5)
    assert all(abs(o) < 0.5 for o in offsets.values()), offsets


def test_clock_jump_scenario_runs_on_redlock_and_its_quorum_holds(tmp_path: Path) -> None:
    r = run_scenario(backend_target("redlock"), find_scenario("clock-jump"), RunOptions(seed=1, ttl_ms=1000), tmp_path)
    assert r.status == "ran", r.reason
    assert r.observations is not None and r.observations.faults.get("clock-jump") == 1
    assert r.judgement is not None
    # The quorum holds: no double grant, no stale write. A quorum pottery could not reach in time (a
    # refused free key, on a loaded machine) is Redlock's declared spurious_refusals: known-unsafe.
    failing = {f.kind for res in r.judgement.results for f in res.findings if f.severity == "violation"}
    assert failing == set(), r.judgement.to_dict()


def test_without_libfaketime_clock_jump_is_skipped_saying_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faketime, "LIBFAKETIME_GLOB", str(tmp_path / "nowhere" / "libfaketime.so.1"))
    r = run_scenario(backend_target("redis"), find_scenario("clock-jump"), RunOptions(seed=1, ttl_ms=300), tmp_path)
    assert r.status == "skipped" and "libfaketime not found" in r.reason


def test_every_pid_run_under_libfaketime_is_recorded_and_cleared_even_when_it_died_unseen() -> None:
    # A server that dies outside the harness's own kill (OOM killer, a signal from elsewhere) and is
    # then restarted leaves its first pid's /dev/shm pair behind unless that pid was on record.
    import os
    import signal

    server = RedisServer(clock_faults=True).start()
    try:
        first = server.pid
        assert first is not None and shm_residue(first)
        assert server.workdir is not None and faketime.recorded_pids(server.workdir) == [first]
        os.kill(first, signal.SIGKILL)  # not through server.kill(): the harness never sees this death
        deadline = time.monotonic() + 5
        while server.is_running():
            assert time.monotonic() < deadline, "SIGKILLed server still running"
            time.sleep(0.01)
        server.restart()
        second = server.pid
        assert second is not None and second != first
        assert faketime.recorded_pids(server.workdir) == [first, second]
    finally:
        server.stop()
    assert shm_residue(first) == [] and shm_residue(second) == []
