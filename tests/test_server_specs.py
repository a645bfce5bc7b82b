"""Server specs: one value per server kind drives process mode, container mode and external mode alike,
and every server (launched, containerised, the user's, the fake) is one ``ServerHandle``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis

from lockchaos.backends.base import ConfigurationError, FaultUnsupported
from lockchaos.backends.fake import PROFILES, FakeClient, fake_server
from lockchaos.harness.run.targets import SERVERS, FakeServerHandle, server_of
from lockchaos.harness.servers.containers import ContainerServer, EtcdContainer, RedisContainer
from lockchaos.harness.servers.external import DEFAULT_PREFIX, SEPARATOR
from lockchaos.harness.servers.handle import ServerHandle
from lockchaos.harness.servers.process import EtcdServer, ExternalServer, ProcessServer, RedisServer
from lockchaos.harness.servers.specs import ETCD, REDIS, REDIS_AOF, SERVER_SPECS, RedisSpec, ServerSpec, server_spec


def test_registry_names_each_shipped_server_and_rejects_unknown_ones() -> None:
    assert list(SERVER_SPECS) == ["redis", "redis-aof", "etcd"]
    assert SERVERS == ("redis", "redis-aof", "etcd", "none")
    assert server_spec("etcd") is ETCD
    with pytest.raises(ConfigurationError, match="unknown server kind 'zookeeper': expected 'redis' or 'etcd'"):
        server_spec("zookeeper")


def test_durability_switch_makes_redis_aof_and_leaves_etcd_durable() -> None:
    assert (REDIS.durable, REDIS_AOF.durable, ETCD.durable) == (False, True, True)
    assert REDIS.with_durability(True) == REDIS_AOF and REDIS_AOF.with_durability(False) == REDIS
    assert ETCD.with_durability(False) is ETCD
    assert [server_of(s) for s in SERVERS] == [("redis", False), ("redis", True), ("etcd", False), ("fake", False)]


def test_external_mode_reads_key_layout_from_the_specs() -> None:
    assert SEPARATOR == {"redis": ":", "etcd": "/"}
    assert DEFAULT_PREFIX == {"redis": "lockchaos:", "etcd": "lockchaos/"}
    assert (ExternalServer("redis://db.example").port, ExternalServer("etcd://db.example").port) == (6379, 2379)


@pytest.mark.parametrize("spec", [REDIS, REDIS_AOF, ETCD], ids=lambda s: s.name)
def test_process_and_container_mode_launch_the_same_command_line(spec: ServerSpec) -> None:
    """Verdicts compare across modes only if both run the same server: the spec is the one source."""
    ports = (20001, 20002)[: spec.port_count]
    process, container = ProcessServer.of(spec), ContainerServer.of(spec)
    process._ports = container._ports = ports
    data = "data" if spec.state_in_subdir else ""
    in_process = [spec.binary_name, *process._args(Path("/w"))]
    in_container = container._command()
    assert in_process == [spec.binary_name, *spec.flags("127.0.0.1", ports, str(Path("/w") / data))]
    assert in_container == [spec.binary_name, *spec.flags("127.0.0.1", ports, f"/data/{spec.kind}" if data
                                                          else "/data")]
    assert process.url == container.url == spec.url("127.0.0.1", ports)


def test_each_kind_is_built_as_its_typed_handle() -> None:
    aof = ProcessServer.of(REDIS_AOF)
    assert isinstance(aof, RedisServer) and aof.persistence and aof.durable
    etcd = ProcessServer.of(ETCD)
    assert isinstance(etcd, EtcdServer) and etcd.min_lease_ttl_ms == 1000 and etcd.durable
    assert isinstance(ContainerServer.of(REDIS), RedisContainer) and not ContainerServer.of(REDIS).durable
    assert isinstance(ContainerServer.of(ETCD), EtcdContainer)


def test_the_fake_and_a_users_server_are_server_handles_too() -> None:
    fake = FakeServerHandle(fake_server("spec-test-fake", capabilities=PROFILES["ideal"]), "fake://spec-test-fake")
    try:
        assert isinstance(fake, ServerHandle) and fake.durable == PROFILES["ideal"].durable
        client = FakeClient(fake.server)
        assert client.acquire("k", "a", 10_000) is not None
        fake.jump_clock(20_000)  # the server's clock passes the lease's end: it is gone
        assert client.holder("k") is None
    finally:
        fake.stop()
    external = ExternalServer("redis://127.0.0.1:6390/0")
    assert isinstance(external, ServerHandle) and not external.durable
    with pytest.raises(FaultUnsupported, match="jump_clock refused"):
        external.jump_clock(1000)


@dataclass(frozen=True, slots=True)
class ToySpec(RedisSpec):
    """A server kind the harness does not ship: a spec alone, no typed handle, no mechanism edits."""

    kind = "toy"
    port_count = 1


@pytest.mark.redis
def test_a_new_server_kind_is_a_spec_and_runs_in_process_mode_as_it_is() -> None:
    server = ProcessServer(ToySpec("toy"))
    with server:
        assert type(server) is ProcessServer and isinstance(server, ServerHandle) and server.kind == "toy"
        client = redis.Redis(host=server.host, port=server.port, socket_timeout=2)
        try:
            client.set("k", "v")
            server.kill()
            server.restart()  # not durable: the kill took the key with it
            assert client.get("k") is None and not server.durable
        finally:
            client.close()
        with pytest.raises(FaultUnsupported, match="not launched with clock_faults"):
            server.jump_clock(1000)
        pid = server.pid
    assert pid is not None and (not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    assert server.workdir is None


def test_soak_default_ttl_is_each_servers_own() -> None:
    from lockchaos.harness.cli.soak import DEFAULT_TTL_MS

    assert (DEFAULT_TTL_MS["redis"], DEFAULT_TTL_MS["etcd"]) == (REDIS.soak_ttl_ms, ETCD.soak_ttl_ms) == (1000, 2000)
