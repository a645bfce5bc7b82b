"""Container mode against a real Docker engine: lifecycle, faults through the engine, certain teardown.

These tests need the engine that ``scripts/container-host.sh`` starts (CI runs it first and exports
what it prints). Without an engine they FAIL, loudly, rather than skip: a container path that is
silently not tested is the failure this file exists to prevent.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from lockchaos.backends import open_backend
from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.harness.cli import main
from lockchaos.harness.contract import run_contract
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario
from lockchaos.harness.servers import containers
from lockchaos.harness.servers.container_clusters import (
    EtcdContainerCluster,
    EtcdContainerMember,
    SentinelContainerCluster,
)
from lockchaos.harness.servers.containers import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_STARTED,
    LABEL_RUN,
    OWNER_HOST,
    ContainerServer,
    EtcdContainer,
    RedisContainer,
    container_engine_available,
    provision_container,
    run_id,
    sweep_orphans,
)
from lockchaos.harness.servers.process import ServerHandle

pytestmark = [pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[1]
PREP = "eval \"$(scripts/container-host.sh)\" (as root) before running these tests"


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The docker SDK client of the engine under test; fails (never skips) when there is none."""
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail(f"DOCKER_HOST is not set: container tests need a Docker engine; {PREP}", pytrace=False)
    reason = container_engine_available()
    if reason is not None:
        pytest.fail(f"{reason}; {PREP}", pytrace=False)
    import docker  # type: ignore[import-untyped]

    client = docker.from_env(timeout=30)
    yield client
    leftovers = client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id()}"}, sparse=True)
    volumes = client.volumes.list(filters={"label": f"{LABEL_RUN}={run_id()}"})
    client.close()
    assert not leftovers and not volumes, f"the tests left {leftovers} {volumes}"


@pytest.fixture(autouse=True)
def _needs_engine(engine: Any) -> None:
    """Every test here needs the engine, including those that do not use the client themselves."""


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def redis_client(server: ServerHandle, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=timeout, socket_connect_timeout=timeout)


def etcd_client(server: ServerHandle, timeout: float = 1.0) -> Any:
    import etcd3

    return etcd3.client(server.host, server.port, timeout=timeout)


def ours(engine: Any, server: ContainerServer) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"name": server.container_name}))


def tcp_listeners(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


both_kinds = pytest.mark.parametrize("make", [RedisContainer, EtcdContainer], ids=["redis", "etcd"])


# --- start, answer, identity --------------------------------------------------------------------


def test_redis_container_starts_on_loopback_and_answers(engine: Any) -> None:
    with RedisContainer() as server:
        assert isinstance(server, ServerHandle)
        assert server.kind == "redis" and server.host == "127.0.0.1"
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert redis_client(server).ping()
        assert server.pid is not None and "redis-server" in " ".join(psutil.Process(server.pid).cmdline())
        (container,) = ours(engine, server)
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert container.labels[LABEL_RUN] == run_id()
        assert container.labels[LABEL_OWNER_PID] == str(os.getpid())


def test_etcd_container_starts_on_loopback_and_answers(engine: Any) -> None:
    with EtcdContainer() as server:
        assert isinstance(server, ServerHandle)
        assert server.url == f"etcd://127.0.0.1:{server.port}"
        client = etcd_client(server)
        client.put("k", "v")
        assert client.get("k")[0] == b"v"
        assert server.pid is not None and "etcd" in " ".join(psutil.Process(server.pid).cmdline())
        (container,) = ours(engine, server)
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"


@both_kinds
def test_container_listens_on_127_0_0_1_only(make: type[ContainerServer]) -> None:
    """Host networking: the server's sockets are the host's, so a wildcard bind would be exposed."""
    with make() as server:
        assert server.pid is not None
        listeners = tcp_listeners(server.pid)
        assert (server.host, server.port) in listeners
        assert {ip for ip, _ in listeners} == {"127.0.0.1"}, listeners


def test_provision_container_mirrors_provision() -> None:
    handle = provision_container("redis", persistence=True)
    try:
        assert isinstance(handle, RedisContainer) and handle.persistence
        assert handle.is_running()
    finally:
        handle.stop()
    with pytest.raises(ConfigurationError, match="unknown server kind"):
        provision_container("zookeeper")


# --- faults through the engine --------------------------------------------------------------------


def test_kill_and_restart_keep_aof_data(engine: Any) -> None:
    with RedisContainer(persistence=True) as server:
        port, first_pid, container_id = server.port, server.pid, server.container_id
        redis_client(server).set("lock", "held")
        server.kill()
        assert not server.is_running()
        with pytest.raises(redis.ConnectionError):
            redis_client(server).ping()
        server.restart()
        assert server.is_running() and server.port == port and server.container_id == container_id
        assert server.pid != first_pid
        assert redis_client(server).get("lock") == b"held"


def test_kill_and_restart_without_persistence_lose_data() -> None:
    """The known-unsafe configuration behaves as it is known to: the soak relies on it."""
    with RedisContainer(persistence=False) as server:
        redis_client(server).set("lock", "held")
        server.kill()
        server.restart()
        assert redis_client(server).get("lock") is None


def test_kill_and_restart_keep_etcd_data() -> None:
    with EtcdContainer() as server:
        etcd_client(server).put("lock", "held")
        server.kill()
        assert not server.is_running()
        server.restart()
        assert etcd_client(server, timeout=2).get("lock")[0] == b"held"


def test_pause_makes_redis_calls_time_out_and_resume_recovers() -> None:
    with RedisContainer() as server:
        client = redis_client(server, timeout=0.3)
        client.set("k", "v")
        server.pause()
        server.pause()  # twice is no error, as SIGSTOP twice is none in process mode
        assert server.paused and server.is_running()
        with pytest.raises(redis.TimeoutError):
            client.get("k")
        server.resume()
        server.resume()
        assert not server.paused
        assert redis_client(server).get("k") == b"v"


def test_pause_makes_etcd_calls_time_out_and_resume_recovers() -> None:
    import etcd3.exceptions

    with EtcdContainer() as server:
        etcd_client(server).put("k", "v")
        server.pause()
        with pytest.raises(etcd3.exceptions.ConnectionTimeoutError):
            etcd_client(server, timeout=0.5).get("k")
        server.resume()
        assert etcd_client(server, timeout=2).get("k")[0] == b"v"


def test_kill_of_a_paused_container_then_restart() -> None:
    with RedisContainer(persistence=True) as server:
        redis_client(server).set("k", "v")
        server.pause()
        server.kill()
        assert not server.is_running() and not server.paused
        server.restart()
        assert redis_client(server).get("k") == b"v"


def test_restart_fails_clearly_when_the_port_was_taken_meanwhile() -> None:
    with RedisContainer() as server:
        server.kill()
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", server.port))
            squatter.listen()
            with pytest.raises(InfrastructureError, match="took port"):
                server.restart()


def test_faults_on_a_stopped_container_are_refused() -> None:
    server = RedisContainer()
    with pytest.raises(InfrastructureError, match="not running"):
        server.kill()
    with server:
        pass
    with pytest.raises(InfrastructureError, match="not started"):
        server.restart()


# --- teardown with certainty ------------------------------------------------------------------------


def test_stop_removes_the_container_and_its_volume(engine: Any) -> None:
    server = RedisContainer(persistence=True).start()
    name, volume = server.container_name, server.volume_name
    assert ours(engine, server) and engine.volumes.list(filters={"name": volume})
    server.pause()  # a paused container is removed too
    server.stop()
    assert not server.is_running()
    assert not engine.containers.list(all=True, filters={"name": name}, sparse=True)
    assert not engine.volumes.list(filters={"name": volume})
    server.stop()  # safe to call again


def test_an_exception_inside_the_context_removes_the_container(engine: Any) -> None:
    with pytest.raises(RuntimeError), RedisContainer() as server:
        name = server.container_name
        raise RuntimeError("scenario blew up")
    assert not engine.containers.list(all=True, filters={"name": name}, sparse=True)


def _labels(pid: int, started: str) -> dict[str, str]:
    return {LABEL_RUN: f"test-{uuid.uuid4().hex[:8]}", LABEL_OWNER_PID: str(pid),
            LABEL_OWNER_STARTED: started, LABEL_OWNER_HOST: OWNER_HOST}


def test_sweep_removes_labelled_leftovers_of_a_dead_owner_only(engine: Any) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = psutil.Process()
    image = os.environ.get(containers.REDIS_IMAGE_ENV, containers.DEFAULT_REDIS_IMAGE)
    orphan_labels = _labels(dead.pid, "1.0")
    live_labels = _labels(alive.pid, repr(alive.create_time()))
    made = []
    try:
        for labels in (orphan_labels, live_labels):
            made.append(engine.containers.create(image, ["redis-server", "--port", "1", "--bind", "127.0.0.1"],
                                                 network_mode="host", labels=labels))
            made.append(engine.volumes.create(labels=labels))
        removed = sweep_orphans()
        orphans = {"label": f"{LABEL_RUN}={orphan_labels[LABEL_RUN]}"}
        live = {"label": f"{LABEL_RUN}={live_labels[LABEL_RUN]}"}
        assert not engine.containers.list(all=True, filters=orphans, sparse=True)
        assert not engine.volumes.list(filters=orphans)
        assert len(engine.containers.list(all=True, filters=live, sparse=True)) == 1
        assert len(engine.volumes.list(filters=live)) == 1
        assert len(removed) == 2
    finally:
        for thing in made:
            with contextlib.suppress(Exception):
                thing.remove(force=True)


def test_a_harness_that_forgets_stop_removes_its_containers_at_exit(engine: Any, tmp_path: Path) -> None:
    script = tmp_path / "forgetful_harness.py"
    script.write_text(textwrap.dedent("""
        from lockchaos.harness.servers.containers import EtcdContainer, RedisContainer
        print(RedisContainer().start().container_name, EtcdContainer().start().container_name, flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Checked at once: the reaper acts only after the owner is dead, atexit before.
    for name in out.stdout.split():
        assert not engine.containers.list(all=True, filters={"name": name}, sparse=True), name


def test_a_sigkilled_harness_leaves_no_container_behind(engine: Any, tmp_path: Path) -> None:
    """atexit never runs on SIGKILL: the reaper process must remove the dead harness's containers."""
    script = tmp_path / "doomed_harness.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from lockchaos.harness.servers.containers import RedisContainer
        server = RedisContainer(persistence=True).start()
        print(server.container_name, server.volume_name, flush=True)
        time.sleep(600)
    """))
    child = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready, "the child harness did not start its container within 30 s"
        name, volume = child.stdout.readline().split()
        assert engine.containers.list(all=True, filters={"name": name}, sparse=True)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert wait_until(lambda: not engine.containers.list(all=True, filters={"name": name}, sparse=True), 15)
    assert wait_until(lambda: not engine.volumes.list(filters={"name": volume}), 5)


def test_no_engine_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    reason = container_engine_available()
    assert reason is not None and "scripts/container-host.sh" in reason and "\n" not in reason
    with pytest.raises(InfrastructureError) as caught:
        RedisContainer().start()
    assert "scripts/container-host.sh" in str(caught.value) and "\n" not in str(caught.value)


def test_an_image_that_cannot_be_had_names_its_variable(engine: Any) -> None:
    server = RedisContainer(image="lockchaos/no-such-image:none")
    with pytest.raises(InfrastructureError, match=containers.REDIS_IMAGE_ENV):
        server.start()
    assert not engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id()}"}, sparse=True)
    assert not engine.volumes.list(filters={"label": f"{LABEL_RUN}={run_id()}"})


# --- the lock contract against a containerised server ---------------------------------------------


class _Restart:
    """What the durability rule needs: a kill -9 and a restart of the server under test."""

    def __init__(self, server: ServerHandle) -> None:
        self.server = server

    def restart_server(self) -> None:
        self.server.kill()
        self.server.restart()


def test_lock_contract_passes_against_containerised_redis() -> None:
    with RedisContainer(persistence=True) as handle:
        results = run_contract(lambda: open_backend(handle.url), server=_Restart(handle))
    failed = [f"{r.rule}: {r.message}" for r in results if r.status == "failed"]
    assert not failed, failed
    durability = [r for r in results if "restart" in r.rule or "durab" in r.rule]
    assert durability and all(r.status == "passed" for r in durability), durability


# --- container-mode clusters: every member a labelled container, faults through the engine -------------


def _cluster_containers(engine: Any) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id()}"}, sparse=True)


def test_container_etcd_cluster_members_are_labelled_loopback_containers_with_a_leader(engine: Any) -> None:
    cluster = EtcdContainerCluster().start()
    try:
        members = [m for m in cluster.members if isinstance(m, EtcdContainerMember)]
        assert len(members) == 3
        names = {m.container_name for m in members}
        assert names <= {c.attrs["Names"][0].lstrip("/") for c in _cluster_containers(engine)}
        for m in members:
            assert m.pid is not None
            assert {host for host, _ in tcp_listeners(m.pid)} == {"127.0.0.1"}, m
        assert cluster.leader() in {m.name for m in members}
    finally:
        cluster.stop()
    left = {c.attrs["Names"][0].lstrip("/") for c in _cluster_containers(engine)}
    left |= {v.name for v in engine.volumes.list(filters={"label": f"{LABEL_RUN}={run_id()}"})}
    assert not names & left, names & left


def test_container_etcd_cluster_elects_a_new_leader_when_the_engine_kills_the_old_one() -> None:
    with EtcdContainerCluster() as cluster:
        old = cluster.leader()
        member = cluster.member(old)
        cluster.kill_member(old)
        assert not member.is_running()
        new = cluster.leader()
        assert new != old
        cluster.restart_member(old)
        assert member.is_running()
        assert cluster.leader() in {m.name for m in cluster.members}


def test_container_sentinel_cluster_promotes_a_replica_when_the_primary_container_dies() -> None:
    with SentinelContainerCluster() as cluster:
        assert len(cluster.nodes) == 3 and len(cluster.sentinels) == 3
        assert cluster.leader() == "r0"
        lock = open_backend(cluster.url)
        try:
            granted = lock.acquire("k", "a", 10_000)
            assert granted is not None
            cluster.kill_member("r0")
            deadline = time.monotonic() + 15.0
            lease = None
            while lease is None and time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # the call that hit the dead primary: retry
                    lease = lock.renew("k", "a", 10_000)
                if lease is None:
                    time.sleep(0.05)
            assert lease is not None and lease.token == granted.token
            assert cluster.leader() != "r0"
        finally:
            lock.close()


def test_container_sentinel_cluster_restarted_whole_keeps_its_last_primary() -> None:
    """After a whole-group kill the nodes come back replicating the last primary: their containers are
    recreated with the new command line (a container's command is fixed when it is created)."""
    with SentinelContainerCluster() as cluster:
        cluster.kill_member("r0")
        assert cluster.leader() != "r0"
        cluster.restart_member("r0")
        # The last primary is the one named when the group dies: on a loaded machine Sentinel's first
        # promotion can time out and a second one pick another replica, after the first was read.
        promoted = cluster.leader()
        assert promoted != "r0"
        cluster.kill()
        assert not any(m.is_running() for m in cluster.members)
        cluster.restart()
        assert cluster.leader() == promoted
        roles = {n.name: n.role() for n in cluster.nodes}
        assert roles[promoted] == "master" and sorted(roles.values()) == ["master", "slave", "slave"], roles


def test_container_sentinel_cluster_isolates_its_primary_through_the_peer_proxies() -> None:
    with SentinelContainerCluster() as cluster:
        old = cluster.leader()
        cluster.isolate_member(old)
        try:
            assert wait_until(lambda: cluster.leader() != old, timeout=15.0)
        finally:
            cluster.heal_member(old)


def test_soak_leader_crash_on_container_etcd_cluster_passes_and_reports_failover_time(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    code = main(["soak", "--provision", "container", "--backend", "etcd-cluster", "--scenario", "leader-crash",
                 "--seed", "5", "--ttl-ms", "1000", "--quiet", "--out", str(out)])
    summary = json.loads((out / "etcd-cluster" / "leader-crash" / "summary.json").read_text())
    assert code == 0, summary["checks"]
    assert summary["checks"]["verdict"] == "pass"
    live = summary["checks"]["checkers"]["liveness"]["stats"]
    assert live["leader_failovers"] == 1
    assert 0 < live["leader_max_s"] <= live["leader_bound_s"]


def test_soak_redlock_master_amnesia_on_a_container_cluster_completes_with_a_verdict(tmp_path: Path) -> None:
    result = run_scenario(backend_target("redlock", provision="container"), find_scenario("redlock-master-amnesia"),
                          RunOptions(seed=3, ttl_ms=1000), tmp_path)
    assert result.status == "ran", result.reason
    assert result.judgement is not None
    # pottery's Redlock reports a quorum it could not reach in time as "held by someone else": a
    # refused free key, which it declares (spurious_refusals) and the checkers report as known-unsafe.
    failing = {f.kind for r in result.judgement.results for f in r.findings if f.severity == "violation"}
    assert failing == set(), result.judgement.to_dict()


def test_a_sigkilled_harness_leaves_no_cluster_member_behind(engine: Any, tmp_path: Path) -> None:
    """Every member, Sentinels included, carries the owner labels the reaper removes by."""
    script = tmp_path / "doomed_cluster_harness.py"
    script.write_text(textwrap.dedent("""
        import time
        from lockchaos.harness.servers.container_clusters import RedlockContainerCluster
        cluster = RedlockContainerCluster(masters=3).start()
        print(*(m.container_name for m in cluster.members), flush=True)
        time.sleep(600)
    """))
    child = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the doomed harness did not start its cluster within 60 s"
        names = child.stdout.readline().split()
        assert len(names) == 3
    finally:
        child.kill()
        child.wait(timeout=10)
    assert wait_until(lambda: not any(engine.containers.list(all=True, filters={"name": n}, sparse=True)
                                      for n in names), timeout=30.0), names
